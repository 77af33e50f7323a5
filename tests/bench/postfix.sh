# Postfix peers for the mail-path benchmarks; source after lib.sh. Each instance is a private
# Postfix (tests/bench/postfix/: STARTTLS required, Cyrus SASL, relaying to the sink $SINK).
#
#   start_postfix NAME            plain Postfix (signs nothing)
#   start_postfix NAME dkim       Postfix + OpenDKIM (Debian opendkim, two milters) signing every
#                                 message with the same four keys as atmos: member domain
#                                 (sender.bench) RSA-2048 + Ed25519, operator domain
#                                 (operator.bench) RSA-2048 + Ed25519, relaxed/relaxed.
# Sets PF_SUB[NAME] (submission port) and PF_DIR[NAME].
declare -A PF_SUB PF_DIR PF_MILTER_PID

start_postfix() {
  local name=$1 signer=${2:-}
  local pf=$WORK/pf-$name
  mkdir -p "$pf/etc/sasl" "$pf/spool" "$pf/data" "$pf/tls"
  chown postfix "$pf/data"
  openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=baseline.test -days 30 \
    -keyout "$pf/tls/key.pem" -out "$pf/tls/cert.pem" 2>/dev/null
  local plain sub
  plain=$(free_port); sub=$(free_port)
  for f in main.cf master.cf; do
    sed -e "s#@DIR@#$pf#g" -e "s#@SINK_HOST@#127.0.0.1#g" -e "s#@SINK_PORT@#$SINK#g" \
        -e "s#@PLAIN_PORT@#$plain#g" -e "s#@SUBMISSION_PORT@#$sub#g" "$ROOT/tests/bench/postfix/$f" > "$pf/etc/$f"
  done
  sed -e "s#@DIR@#$pf#g" "$ROOT/tests/bench/postfix/smtpd.conf" > "$pf/etc/sasl/smtpd.conf"
  echo -n benchpass | saslpasswd2 -c -p -f "$pf/sasldb2" -u baseline.test bench
  chown root:postfix "$pf/sasldb2"; chmod 640 "$pf/sasldb2"
  if [ "$signer" = dkim ]; then
    command -v opendkim >/dev/null || { echo "opendkim is required (apt-get install opendkim)" >&2; exit 1; }
    # OpenDKIM's SignatureAlgorithm is one per process, so two milters in a chain: one signs
    # with both domains' RSA keys, the next with both domains' Ed25519 keys.
    # Unix sockets: over TCP the milter protocol's small writes meet delayed ACKs (~40 ms each).
    local k=$pf/dkim milters=() alg kind sock
    mkdir -p "$k"
    for alg in rsa ed; do
      sock=$k/milter-$alg.sock
      if [ $alg = rsa ]; then kind=rsa-sha256; else kind=ed25519-sha256; fi
      for owner in member operator; do
        if [ $alg = rsa ]; then
          openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$k/$owner-$alg.pem" 2>/dev/null
        else
          openssl genpkey -algorithm ed25519 -out "$k/$owner-$alg.pem"
        fi
      done
      chmod 600 "$k"/*.pem
      cat > "$k/KeyTable-$alg" <<TABLE
member-$alg sender.bench:$alg:$k/member-$alg.pem
operator-$alg operator.bench:$alg:$k/operator-$alg.pem
TABLE
      cat > "$k/SigningTable-$alg" <<TABLE
*@sender.bench member-$alg
*@sender.bench operator-$alg
TABLE
      cat > "$k/opendkim-$alg.conf" <<CONF
Syslog no
Mode s
Socket local:$sock
UMask 000
KeyTable file:$k/KeyTable-$alg
SigningTable refile:$k/SigningTable-$alg
SignatureAlgorithm $kind
MultipleSignatures yes
# The keys sit under /tmp (world-writable), which OpenDKIM's safety check refuses.
RequireSafeKeys no
Canonicalization relaxed/relaxed
OversignHeaders From
Background no
PidFile $k/pid-$alg
CONF
      opendkim -f -x "$k/opendkim-$alg.conf" 2> "$k/opendkim-$alg.err" & PF_MILTER_PID[$name]+=" $!"; PIDS+=($!)
      for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
      milters+=("unix:$sock")
    done
    cat >> "$pf/etc/main.cf" <<CONF
smtpd_milters = ${milters[*]}
non_smtpd_milters = \$smtpd_milters
milter_default_action = tempfail
CONF
  fi
  postfix -c "$pf/etc" check
  script -qc "postfix -c $pf/etc start" /dev/null >/dev/null
  wait_port "$sub"
  PF_SUB[$name]=$sub
  PF_DIR[$name]=$pf
  STOP_POSTFIX+=("$pf/etc")
}

# Waits until the instance's queue is empty; prints the seconds it took.
postfix_drain() {
  local pf=${PF_DIR[$1]} t0
  t0=$(date +%s.%N)
  for _ in $(seq 6000); do
    [ -z "$(find "$pf/spool/incoming" "$pf/spool/active" "$pf/spool/deferred" "$pf/spool/maildrop" -type f 2>/dev/null)" ] && break
    sleep 0.01
  done
  python3 -c "print(round($(date +%s.%N)-$t0,2))"
}

# PSS (kB) of all Postfix processes of an instance, plus its milter: shared pages counted once.
postfix_pss_kb() {
  local pf=${PF_DIR[$1]} master pids
  master=$(awk '{print $1}' "$pf/spool/pid/master.pid" 2>/dev/null || true)
  pids="$master $(pgrep -P "${master:-0}" || true) ${PF_MILTER_PID[$1]:-}"
  for p in $pids; do cat /proc/$p/smaps_rollup 2>/dev/null; done | awk '/^Pss:/ {s+=$2} END {print s+0}'
}

# run_postfix NAME SESSIONS MESSAGES: one load; prints the load generator's JSON plus drain time,
# memory (PSS of the instance's processes and milters) and the milters' CPU ms per message.
run_postfix() {
  local out drain mem c0=0 c1=0 p b0 box
  for p in ${PF_MILTER_PID[$1]:-}; do c0=$(python3 -c "print($c0+$(cpu_s "$p"))"); done
  b0=$(box_busy)
  out=$("$LOADGEN" --server "127.0.0.1:${PF_SUB[$1]}" --user bench@baseline.test --password benchpass \
    --from app@sender.bench --to user@rcpt.test --sessions "$2" --messages "$3" --size 2048)
  box=$(box_ms_per_msg "$b0" "$3")
  # Right after the load, while every smtpd is still alive.
  mem=$(postfix_pss_kb "$1")
  drain=$(postfix_drain "$1")
  for p in ${PF_MILTER_PID[$1]:-}; do c1=$(python3 -c "print($c1+$(cpu_s "$p"))"); done
  python3 -c "import json,sys;d=json.loads(sys.argv[1]);d['drain_s']=$drain;d['memory_kb']=$mem;d['memory']='PSS';d['box_cpu_ms_per_msg']=$box
if $c1 > 0: d['milter_cpu_ms_per_msg']=round(($c1-$c0)*1000/$3,3)
print(json.dumps(d))" "$out"
}

# probe_opendkim NAME: one message through Postfix + OpenDKIM to a dumping sink, to say exactly
# what it signs. Sets PROBE_SIGS and PROBE_ALGS ("domain algorithm,...").
probe_opendkim() {
  local probe
  probe=$(free_port)
  mkdir -p "$WORK/probe"; chown nobody "$WORK/probe"
  /usr/sbin/smtp-sink -u nobody -d "$WORK/probe/m." 127.0.0.1:$probe 10 & PIDS+=($!)
  wait_port $probe
  postconf -c "${PF_DIR[$1]}/etc" -e "transport_maps = inline:{probe.test=smtp:[127.0.0.1]:$probe}"
  postfix -c "${PF_DIR[$1]}/etc" reload >/dev/null 2>&1
  "$LOADGEN" --server "127.0.0.1:${PF_SUB[$1]}" --user bench@baseline.test --password benchpass \
    --from app@sender.bench --to probe@probe.test --sessions 1 --messages 1 --size 2048 >/dev/null
  for _ in $(seq 500); do cat "$WORK"/probe/m.* 2>/dev/null | grep -q '^DKIM-Signature' && break; sleep 0.01; done
  PROBE_SIGS=$(cat "$WORK"/probe/m.* | grep -c '^DKIM-Signature' || true)
  PROBE_ALGS=$(cat "$WORK"/probe/m.* | grep -A3 '^DKIM-Signature' | grep -o 'a=[a-z0-9-]*; .*d=[a-z.]*' | sed -E 's/a=([a-z0-9-]*);.*d=([a-z.]*)/\2 \1/' | sort | paste -sd, -)
  postconf -c "${PF_DIR[$1]}/etc" -X transport_maps
  postfix -c "${PF_DIR[$1]}/etc" reload >/dev/null 2>&1
  echo "Postfix + OpenDKIM signs: $PROBE_SIGS signatures ($PROBE_ALGS)" >&2
}
