#!/usr/bin/env python3
"""A Kafka client independent of the relay (PyPI confluent-kafka), for the event-bus tests.

usage: kafka_tool.py BROKER read TOPIC        prints every message value (JSON) of partition 0
       kafka_tool.py BROKER write TOPIC JSON  produces one message and waits for the ack
"""
import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

broker, command, topic = sys.argv[1:4]

if command == "write":
    p = Producer({"bootstrap.servers": broker})
    errors = []
    p.produce(topic, sys.argv[4].encode(), callback=lambda err, _msg: errors.append(err) if err else None)
    left = p.flush(30)
    if left or errors:
        sys.exit(f"not delivered: {errors or left}")
    print(json.dumps({"written": True}))
elif command == "read":
    c = Consumer({
        "bootstrap.servers": broker,
        "group.id": "kafka-tool",
        "enable.auto.commit": False,
    })
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    # Read until the partition has been quiet for 2 s. (tansu's high watermark counts record
    # batches, not records, so it cannot say where the end is.)
    values, idle_since, deadline = [], time.time(), time.time() + 30
    while time.time() - idle_since < 2 and time.time() < deadline:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        values.append(json.loads(m.value()))
        idle_since = time.time()
    c.close()
    print(json.dumps(values))
else:
    sys.exit(f"unknown command {command}")
