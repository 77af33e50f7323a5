// Starts a real @atproto/pds from PDS_* environment variables (see tests/src/atproto.rs) and
// prints "ready" once it serves.
import { PDS, envToCfg, envToSecrets, readEnv } from '@atproto/pds'

const env = readEnv()
const pds = await PDS.create(envToCfg(env), envToSecrets(env))
await pds.start()
console.log('ready')
