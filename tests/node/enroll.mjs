// Drives the /enroll wizard in Debian's chromium with playwright-core, as a person would:
// sign in (on the PDS's own pages), name a domain, enroll, read the API key, wait for the DNS
// records to go live. Talks to the Rust test over stdin/stdout, one JSON object per line:
// it prints {"step": ...} as it goes and waits for {"go": true} where the test must act.
//
// usage: node enroll.mjs '{"relay": "http://127.0.0.1:P", "identifier": "...", "password": "...",
//   "domain": "...", "shots": "/dir", "keyboard": false, "expect": "enrolled" | "<error code>",
//   "hostRules": "MAP relay.atmos.internal 127.x.y.z" (optional), "visit": URL (only look)}'
import { launch, protocol, Person } from './lib.mjs'

const args = JSON.parse(process.argv[2])
const { next, say, close } = protocol()
const browser = await launch(args.hostRules)
// That relay's certificate is the test's own; the PDS, not the browser, is what must trust it.
const context = await browser.newContext({ viewport: { width: args.width || 1280, height: 900 }, ignoreHTTPSErrors: !!args.hostRules })
const page = await context.newPage()
const person = new Person(page, { shots: args.shots, keyboard: args.keyboard, name: 'enroll' })
const { accessibility, consoleErrors } = person
const snap = (n) => person.snap(n)
const audit = (n) => person.audit(n)
const activate = (s) => person.activate(s)
const fill = (s, t) => person.fill(s, t)

// The callback as the authorization server sent it. The PDS answers its consent with a
// redirect, which Playwright's routes never see, so a test that tampers with the callback (a
// wrong iss; another browser, without the sign-in cookie) pauses it with the DevTools Fetch
// domain, aborts it, and navigates to the altered URL itself.
let callbackUrl = null
let pausedCallback = null
if (args.tamper) {
  const cdp = await context.newCDPSession(page)
  pausedCallback = new Promise((resolve) => {
    cdp.on('Fetch.requestPaused', async (e) => {
      await cdp.send('Fetch.failRequest', { requestId: e.requestId, errorReason: 'Aborted' })
      await cdp.send('Fetch.disable')
      resolve(e.request.url)
    })
  })
  await cdp.send('Fetch.enable', { patterns: [{ urlPattern: `${args.relay}/oauth/callback*`, requestStage: 'Request' }] })
}
page.on('request', (r) => { if (r.url().startsWith(`${args.relay}/oauth/callback`) && !callbackUrl) callbackUrl = r.url() })

try {
  // Only look at a page (a crafted link, say) and report what it says.
  if (args.visit) {
    await page.goto(args.visit)
    await page.waitForSelector('#failure')
    await snap('visited')
    say({ step: 'visited', text: await page.textContent('#failure') })
    process.exit(0)
  }
  await page.goto(`${args.relay}/enroll`)
  await page.waitForSelector('#identifier')
  await snap('signin')
  await audit('signin')
  await person.signInAtPds({ relay: args.relay, identifier: args.identifier, password: args.password, consent: args.consent, loginAs: args.loginAs })
  if (pausedCallback) {
    const url = new URL(await pausedCallback)
    callbackUrl = url.toString()
    if (args.tamper.iss) url.searchParams.set('iss', args.tamper.iss)
    if (args.tamper.dropSigninCookie) await context.clearCookies({ name: 'atmos_signin' })
    // Someone who learnt the state (a log, a Referer) opens the callback first, in a browser of
    // their own: the relay must refuse it without cancelling this person's sign-in.
    if (args.tamper.strangerFirst) {
      const res = await fetch(url.toString(), { redirect: 'manual' })
      say({ step: 'stranger', status: res.status, location: res.headers.get('location') })
    }
    await page.goto(url.toString())
  }
  await page.waitForURL((u) => u.toString().startsWith(args.relay), { timeout: 30000 })
  if (args.expect && args.expect !== 'enrolled') {
    await page.waitForSelector('#failure')
    await snap('signin-refused')
    await audit('signin-refused')
    say({ step: 'refused', text: await page.textContent('#failure'), url: page.url(), accessibility })
    process.exit(0)
  }
  await page.waitForSelector('#signed-in')
  await page.waitForSelector('#domain')
  await snap('domain')
  await audit('domain')
  const cookie = (await context.cookies()).map((c) => `${c.name}=${c.value}`).join('; ')
  say({ step: 'signed-in', text: await page.textContent('#signed-in'), cookie, callback: callbackUrl })
  await next()
  await fill('#domain', args.domain)
  await activate('#check')
  await page.waitForSelector('#ownership[data-proven=true]', { timeout: 30000 })
  await snap('ownership-proven')
  await activate('#enroll')
  await page.waitForSelector('#api-key', { timeout: 60000 })
  await snap('api-key')
  await audit('api-key')
  const apiKey = (await page.textContent('#api-key')).trim()
  const swaks = await page.textContent('#swaks')
  const standing = await page.textContent('#standing')
  say({ step: 'enrolled', apiKey, swaks, standing })
  // The test publishes the DKIM records; the page must show them live.
  await next()
  await activate('#recheck')
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('.record[data-status]')]
    return rows.length > 0 && rows.filter((r) => r.querySelector('dd')?.textContent.includes('TXT') && !r.textContent.includes('(optional)'))
      .every((r) => r.dataset.status === 'ok' || r.dataset.status === 'different')
  }, null, { timeout: 60000 })
  await snap('records-live')
  await audit('records-live')
  const statuses = await page.$$eval('.record[data-status]', (rs) => rs.map((r) => [r.dataset.record, r.dataset.status]))
  // Reloading resumes where the member was.
  await page.reload()
  await page.waitForSelector('#records-title')
  await snap('resumed')
  say({ step: 'done', statuses, consoleErrors, accessibility })
} catch (e) {
  await snap('failure').catch(() => {})
  say({ step: 'error', message: String(e && e.stack || e), url: page.url(), consoleErrors })
  process.exitCode = 1
} finally {
  await browser.close()
  close()
}
