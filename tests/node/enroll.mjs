// Drives the /enroll wizard in Debian's chromium with playwright-core, as a person would:
// sign in (on the PDS's own pages), name a domain, enroll, read the API key, wait for the DNS
// records to go live. Talks to the Rust test over stdin/stdout, one JSON object per line:
// it prints {"step": ...} as it goes and waits for {"go": true} where the test must act.
//
// usage: node enroll.mjs '{"relay": "http://127.0.0.1:P", "identifier": "...", "password": "...",
//   "domain": "...", "shots": "/dir", "keyboard": false, "expect": "enrolled" | "<error code>",
//   "hostRules": "MAP relay.atmos.internal 127.x.y.z" (optional), "visit": URL (only look)}'
import { chromium } from 'playwright-core'
import readline from 'node:readline'

const args = JSON.parse(process.argv[2])
const lines = readline.createInterface({ input: process.stdin })
const waiting = []
lines.on('line', (l) => { const w = waiting.shift(); if (w) w(JSON.parse(l)) })
const next = () => new Promise((resolve) => waiting.push(resolve))
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n')

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--disable-quic',
    // A relay on a dotted test hostname (the confidential client): mapped to its loopback address.
    ...(args.hostRules ? [`--host-resolver-rules=${args.hostRules}`] : [])],
})
// That relay's certificate is the test's own; the PDS, not the browser, is what must trust it.
const context = await browser.newContext({ viewport: { width: args.width || 1280, height: 900 }, ignoreHTTPSErrors: !!args.hostRules })
const page = await context.newPage()
page.setDefaultTimeout(30000)
const consoleErrors = []
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()) })
// axe-core audits each of the relay's own pages (not the PDS's); serious and critical
// violations are reported to the test.
const axePath = new URL('./node_modules/axe-core/axe.min.js', import.meta.url).pathname
const accessibility = []
const audit = async (name) => {
  await page.addScriptTag({ path: axePath })
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ['violations'] }))
  for (const v of result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')) {
    accessibility.push({ page: name, id: v.id, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 3) })
  }
}
let shot = 0
const snap = async (name) => {
  shot += 1
  await page.screenshot({ path: `${args.shots}/${String(shot).padStart(2, '0')}-${name}.png`, fullPage: true })
}
// Keyboard-only: reach a control with Tab from the top of the page, then activate it.
const tabTo = async (selector, max = 40) => {
  await page.evaluate(() => document.activeElement && document.activeElement.blur())
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab')
    if (await page.evaluate((s) => document.activeElement && document.activeElement.matches(s), selector)) return
  }
  throw new Error(`Tab never reached ${selector}`)
}
const activate = async (selector) => {
  if (args.keyboard) { await tabTo(selector); await page.keyboard.press('Enter') } else { await page.click(selector) }
}
const fill = async (selector, text) => {
  if (args.keyboard) { await tabTo(selector); await page.keyboard.type(text) } else { await page.fill(selector, text) }
}

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
  await fill('#identifier', args.identifier)
  await activate('#signin')
  // The PDS's own sign-in page, then its consent page.
  await page.waitForURL((u) => !u.toString().startsWith(args.relay), { timeout: 30000 })
  await page.waitForSelector('input[type=password]')
  await snap('pds-signin')
  const login = page.locator('input[type=text], input[type=email], input[name=username], input[name=identifier]').first()
  if (await login.count() && await login.isVisible() && await login.isEditable() && !(await login.inputValue())) {
    await login.fill(args.identifier)
  }
  // Another account than the one typed: the PDS locks the identifier to the relay's
  // login_hint in its page but not in its API, so the sign-in call is sent for that account.
  if (args.loginAs) {
    await page.route('**/@atproto/oauth-provider/~api/sign-in', (route) => {
      const body = JSON.parse(route.request().postData() || '{}')
      return route.continue({ postData: JSON.stringify({ ...body, username: args.loginAs }) })
    })
  }
  await page.fill('input[type=password]', args.password)
  await page.keyboard.press('Enter')
  const consent = args.consent || 'authorize'
  const button = consent === 'deny' ? /deny/i : /authorize|accept|allow/i
  await page.getByRole('button', { name: button }).first().waitFor()
  await snap('pds-consent')
  await page.getByRole('button', { name: button }).first().click()
  if (pausedCallback) {
    const url = new URL(await pausedCallback)
    callbackUrl = url.toString()
    if (args.tamper.iss) url.searchParams.set('iss', args.tamper.iss)
    if (args.tamper.dropSigninCookie) await context.clearCookies({ name: 'atmos_signin' })
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
  lines.close()
}
