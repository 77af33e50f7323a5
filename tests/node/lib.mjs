// What every browser walk shares: Debian's chromium through playwright-core, the line protocol
// with the Rust test, screenshots at a phone's and a laptop's width, axe-core audits, the
// keyboard, and signing in on the PDS's own pages.
import { chromium } from 'playwright-core'
import readline from 'node:readline'
import { readFileSync } from 'node:fs'

/// The line protocol: `say` prints {"step": ...}; `next` waits for the test's {"go": ...} line.
export function protocol () {
  const lines = readline.createInterface({ input: process.stdin })
  const waiting = []
  lines.on('line', (l) => { const w = waiting.shift(); if (w) w(JSON.parse(l)) })
  return {
    next: () => new Promise((resolve) => waiting.push(resolve)),
    say: (o) => process.stdout.write(JSON.stringify(o) + '\n'),
    close: () => lines.close(),
  }
}

/// Chromium from Debian, headless; `hostRules` maps a test hostname to a loopback address.
export async function launch (hostRules) {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--disable-quic',
      ...(hostRules ? [`--host-resolver-rules=${hostRules}`] : [])],
  })
}

const axePath = new URL('./node_modules/axe-core/axe.min.js', import.meta.url).pathname
const axeSource = readFileSync(axePath, 'utf8')
export const WIDE = { width: 1280, height: 900 }
export const NARROW = { width: 375, height: 812 }

/// A person at one page: screenshots, audits and console errors are collected for the report.
export class Person {
  constructor (page, { shots, keyboard = false, name = 'page' }) {
    this.page = page
    this.shots = shots
    this.keyboard = keyboard
    this.name = name
    this.shot = 0
    this.accessibility = []
    this.consoleErrors = []
    page.setDefaultTimeout(30000)
    // A page that answers 401/403 logs the failed load; the app then explains it, so only
    // script errors count here.
    page.on('console', (m) => {
      if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of 40[13]/.test(m.text())) this.consoleErrors.push(`${page.url()}: ${m.text()}`)
    })
    page.on('pageerror', (e) => this.consoleErrors.push(`${page.url()}: ${e}`))
  }

  async snap (name) {
    this.shot += 1
    const n = String(this.shot).padStart(2, '0')
    await this.page.screenshot({ path: `${this.shots}/${this.name}-${n}-${name}.png`, fullPage: true })
  }

  /// axe-core over the page: serious and critical violations are kept for the test.
  async audit (name) {
    // Evaluated by the test harness, not added as a <script>: the relay's Content Security
    // Policy refuses inline scripts it did not ship (consoleErrors would show the violation).
    if (!(await this.page.evaluate(() => typeof window.axe === 'object'))) await this.page.evaluate(axeSource)
    const result = await this.page.evaluate(async () => await window.axe.run(document, { resultTypes: ['violations'] }))
    for (const v of result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')) {
      this.accessibility.push({ page: name, id: v.id, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 3) })
    }
  }

  /// The page at 1280 px and at 375 px: a screenshot and an audit at each, and at 375 px no
  /// sideways scrolling of the page itself (wide tables scroll in their own region).
  async look (name) {
    await this.snap(`${name}-1280`)
    await this.audit(`${name} @1280`)
    await this.page.setViewportSize(NARROW)
    await this.page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))))
    // The page's own width, and the innermost elements that stick out (outside scroll regions).
    const { overflow, nodes } = await this.page.evaluate(() => {
      const root = document.documentElement
      const width = root.clientWidth
      // (An absolutely positioned element escapes a scroller that is not its containing block.)
      const inScroller = (e) => { if (getComputedStyle(e).position === 'absolute') return false; for (let p = e.parentElement; p; p = p.parentElement) { if (getComputedStyle(p).overflowX === 'auto') return true } return false }
      const out = [...document.body.querySelectorAll('*')].filter((e) => e.getBoundingClientRect().right > width + 1 && !inScroller(e))
      const innermost = out.filter((e) => !out.some((o) => o !== e && e.contains(o)))
      const describe = (e) => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : ''} "${(e.textContent || '').slice(0, 40)}"`
      return { overflow: root.scrollWidth - width, nodes: innermost.slice(0, 5).map(describe) }
    })
    if (overflow > 1) this.accessibility.push({ page: `${name} @375`, id: 'horizontal-overflow', help: `the page is ${overflow}px wider than the screen`, nodes })
    await this.snap(`${name}-375`)
    await this.audit(`${name} @375`)
    await this.page.setViewportSize(WIDE)
  }

  /// Keyboard-only: reach a control with Tab from the top of the page.
  async tabTo (selector, max = 120) {
    await this.page.evaluate(() => document.activeElement && document.activeElement.blur())
    for (let i = 0; i < max; i++) {
      await this.page.keyboard.press('Tab')
      if (await this.page.evaluate((s) => document.activeElement && document.activeElement.matches(s), selector)) return
    }
    throw new Error(`Tab never reached ${selector}`)
  }

  async activate (selector) {
    if (this.keyboard) { await this.tabTo(selector); await this.page.keyboard.press('Enter') } else { await this.page.click(selector) }
  }

  async fill (selector, text) {
    if (this.keyboard) {
      await this.tabTo(selector)
      await this.page.keyboard.press('Control+A')
      await this.page.keyboard.type(text)
    } else { await this.page.fill(selector, text) }
  }

  /// From the relay's sign-in form (already on the page) through the PDS's sign-in and
  /// consent pages, back to the relay. `loginAs` sends the PDS's sign-in call for another
  /// account than the one typed (the PDS locks its form to the relay's login_hint).
  async signInAtPds ({ relay, identifier, password, consent = 'authorize', loginAs }) {
    const page = this.page
    await this.fill('#identifier', identifier)
    await this.activate('#signin')
    await page.waitForURL((u) => !u.toString().startsWith(relay), { timeout: 30000 })
    await page.waitForSelector('input[type=password]')
    await this.snap('pds-signin')
    const login = page.locator('input[type=text], input[type=email], input[name=username], input[name=identifier]').first()
    if (await login.count() && await login.isVisible() && await login.isEditable() && !(await login.inputValue())) {
      await login.fill(identifier)
    }
    if (loginAs) {
      await page.route('**/@atproto/oauth-provider/~api/sign-in', (route) => {
        const body = JSON.parse(route.request().postData() || '{}')
        return route.continue({ postData: JSON.stringify({ ...body, username: loginAs }) })
      })
    }
    await page.fill('input[type=password]', password)
    await page.keyboard.press('Enter')
    const button = consent === 'deny' ? /deny/i : /authorize|accept|allow/i
    await page.getByRole('button', { name: button }).first().waitFor()
    await this.snap('pds-consent')
    await page.getByRole('button', { name: button }).first().click()
  }

  /// The session cookies, as a `Cookie:` header value.
  async cookie () {
    return (await this.page.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ')
  }

  /// What the test needs to judge the walk.
  report () {
    return { consoleErrors: this.consoleErrors, accessibility: this.accessibility }
  }
}
