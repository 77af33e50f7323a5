// Validates records against the lexicon JSON in lexicons/ with @atproto/lexicon.
// Input (stdin): {"lexicon": NSID, "records": [...]}. Output: one {"valid": bool, "error"?} per record.
import { Lexicons } from '@atproto/lexicon'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'

const dir = process.argv[2]
const lex = new Lexicons()
for (const f of readdirSync(dir, { recursive: true })) {
  if (String(f).endsWith('.json')) lex.add(JSON.parse(readFileSync(join(dir, String(f)), 'utf8')))
}
const input = JSON.parse(readFileSync(0, 'utf8'))
const results = input.records.map((r) => {
  try {
    lex.assertValidRecord(input.lexicon, r)
    return { valid: true }
  } catch (e) {
    return { valid: false, error: String(e.message ?? e) }
  }
})
console.log(JSON.stringify(results))
