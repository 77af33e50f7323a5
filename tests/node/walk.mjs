// Walks every page of the web product as a member, as an operator and as a stranger, in
// Debian's chromium (playwright-core), the way people would: sign in on the PDS's own pages,
// watch a message go out, filter, open it, make a new key, remove a suppression; approve,
// suspend with a reason, retry a filtered queue, negate a label, settle a report; read the
// public pages. Each page is looked at (screenshot + axe-core) at 1280 and 375 px.
// Talks to tests/e2e/web_pages.rs over stdin/stdout, one JSON object per line.
//
// usage: node walk.mjs '{"relay": URL, "shots": DIR, "member": {"did", "password"},
//   "operator": {"did", "password"}, "pending": DID, "suppressed": ADDRESS, "queueDomain": D,
//   "label": VALUE, "report": ID, "reason": TEXT}'
import { launch, protocol, Person, WIDE } from './lib.mjs'

const args = JSON.parse(process.argv[2])
const { next, say, close } = protocol()
const browser = await launch()
const people = []
const person = async (name, keyboard = false) => {
  const context = await browser.newContext({ viewport: WIDE })
  const p = new Person(await context.newPage(), { shots: args.shots, keyboard, name })
  people.push(p)
  return p
}
const relay = args.relay
const member = await person('member')
const operator = await person('operator', true)
const stranger = await person('public')
// Polls `check` (a page function) by re-running `refresh` until it holds.
const until = async (p, refresh, check, arg, what, ms = 60000) => {
  const deadline = Date.now() + ms
  for (;;) {
    await refresh()
    try {
      await p.page.waitForFunction(check, arg, { timeout: 2000 })
      return
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`never: ${what}`)
    }
  }
}

try {
  // ---- The member -------------------------------------------------------------------------
  const m = member.page
  let res = await m.goto(`${relay}/account`)
  say({ step: 'account-signed-out', status: res.status() })
  await m.waitForSelector('#identifier')
  await member.signInAtPds({ relay, identifier: args.member.did, password: args.member.password })
  await m.waitForURL((u) => u.toString().startsWith(`${relay}/account`))
  await m.waitForSelector('#account-state')
  await m.waitForSelector(`tr[data-address="${args.suppressed}"]`)
  await m.waitForSelector('#usage-title')
  await m.waitForSelector('figure.chart')
  await member.look('account')
  say({ step: 'member-signed-in', cookie: await member.cookie(), state: await m.getAttribute('#account-state', 'data-state') })

  // The test sends a message to an MX that holds it at DATA: queued first, then delivered.
  const sent = await next()
  const row = `tr.message[data-id="${sent.id}"]`
  await until(member, () => m.click('#filter-messages'), (s) => document.querySelector(s)?.dataset.status === 'accepted', row, 'the message queued')
  await member.snap('message-queued')
  const queuedText = await m.textContent(`${row} .status`)
  await until(member, () => m.click('#filter-messages'), (s) => document.querySelector(s)?.dataset.status === 'sent', row, 'the message delivered')
  const sentText = await m.textContent(`${row} .status`)
  await member.snap('message-delivered')
  // Filtering by recipient leaves only the matching messages.
  await m.fill('#f-recipient', sent.recipientPart)
  await m.click('#filter-messages')
  await m.waitForFunction((n) => [...document.querySelectorAll('tr.message')].length === n && !document.querySelector('#messages-title ~ .row [role=status]'), sent.expectRows)
  const filtered = await m.$$eval('tr.message', (rs) => rs.map((r) => r.dataset.id))
  await m.selectOption('#f-status', 'bounced')
  await m.fill('#f-recipient', '')
  await m.click('#filter-messages')
  await m.waitForFunction(() => [...document.querySelectorAll('tr.message')].every((r) => r.dataset.status === 'bounced') && document.querySelectorAll('tr.message').length > 0)
  const bouncedRows = await m.$$eval('tr.message', (rs) => rs.map((r) => r.dataset.id))
  await m.selectOption('#f-status', '')
  await m.fill('#f-recipient', sent.recipientPart)
  await m.click('#filter-messages')
  await m.waitForSelector(row)
  // The detail: every recipient, every attempt, the remote reply verbatim.
  await m.click(`${row} a`)
  await m.waitForURL(`${relay}/account/messages/${sent.id}`)
  await m.waitForSelector('article.recipient[data-status=sent] pre.reply')
  const replies = await m.$$eval('article.recipient pre.reply', (ps) => ps.map((p) => p.textContent))
  await member.look('message-detail')
  say({ step: 'message-seen', queuedText, sentText, filtered, bouncedRows, replies })
  await next()

  // A suppression that is not a complaint can be removed.
  await m.goto(`${relay}/account`)
  await m.waitForSelector(`tr[data-address="${args.suppressed}"]`)
  await m.click(`tr[data-address="${args.suppressed}"] button`)
  await m.waitForSelector('#suppression-outcome')
  await m.waitForSelector(`tr[data-address="${args.suppressed}"]`, { state: 'detached' })
  await member.snap('suppression-removed')
  say({ step: 'suppression-removed', outcome: await m.textContent('#suppression-outcome') })
  await next()

  // A new API key, with the keyboard; shown once.
  member.keyboard = true
  await member.activate('#new-key')
  await m.waitForSelector('#api-key')
  member.keyboard = false
  await member.snap('new-key')
  say({ step: 'new-key', key: (await m.textContent('#api-key')).trim(), outcome: await m.textContent('#key-outcome') })
  await next()

  // Not an operator: the admin pages say so, with a 403.
  res = await m.goto(`${relay}/admin`)
  await m.waitForSelector('#not-operator')
  await member.look('admin-as-member')
  const memberAdmin = res.status()

  // ---- The operator (keyboard only) -------------------------------------------------------
  const o = operator.page
  res = await o.goto(`${relay}/admin`)
  const signedOutAdmin = res.status()
  await o.waitForSelector('#identifier')
  await operator.signInAtPds({ relay, identifier: args.operator.did, password: args.operator.password })
  await o.waitForURL((u) => u.toString().startsWith(`${relay}/admin`))
  await o.waitForSelector('#queue-depth')
  await o.waitForSelector('figure.chart')
  await operator.look('overview')
  say({ step: 'operator-signed-in', memberAdmin, signedOutAdmin, cookie: await operator.cookie(), depth: await o.textContent('#queue-depth') })
  await next()

  // Members, pending first; approve the pending one.
  await o.goto(`${relay}/admin/members`)
  await o.waitForSelector('article.member')
  const order = await o.$$eval('article.member', (as) => as.map((a) => [a.dataset.did, a.dataset.state]))
  await operator.look('members')
  const card = (did) => `article.member[data-did="${did}"]`
  await operator.activate(`${card(args.pending)} button.approve`)
  await o.waitForSelector(`${card(args.pending)}[data-state=active]`)
  // The member's second domain waits for review: approve it from its card.
  const review = `${card(args.member.did)} p.review`
  const awaiting = await o.$$eval(review, (ps) => ps.map((p) => p.dataset.domain))
  await operator.activate(`${review} button.approve-domain`)
  await o.waitForSelector(review, { state: 'detached' })
  say({ step: 'approved', order, awaiting })
  await next()

  // Suspending needs a reason; without one the page says so and nothing happens.
  await operator.activate(`${card(args.member.did)} button.suspend`)
  await o.waitForSelector(`${card(args.member.did)} .error`)
  const noReason = await o.textContent(`${card(args.member.did)} .error`)
  await operator.fill(`${card(args.member.did)} input.reason`, args.reason)
  await operator.activate(`${card(args.member.did)} button.suspend`)
  await o.waitForSelector(`${card(args.member.did)}[data-state=suspended]`)
  await operator.snap('suspended')
  say({ step: 'suspended', noReason })
  await next()

  // The member sees the reason.
  await m.goto(`${relay}/account`)
  await m.waitForSelector('#state-reason')
  await member.look('account-suspended')
  say({ step: 'member-sees-suspension', state: await m.getAttribute('#account-state', 'data-state'), reason: await m.textContent('#state-reason'), labels: await m.textContent('#public-labels') })
  await next()

  // One member's page.
  await o.goto(`${relay}/admin/members/${encodeURIComponent(args.member.did)}`)
  await o.waitForSelector('#member-state')
  await o.waitForSelector('#member-domains-title')
  await o.waitForSelector('figure.chart')
  await operator.look('member-detail')

  // The queue: filter by recipient domain, retry the selection after a confirmation.
  await o.goto(`${relay}/admin/queue`)
  await o.waitForSelector('#selection')
  await operator.fill('#queue-domain', args.queueDomain)
  await operator.activate('#filter-queue')
  await o.waitForFunction((d) => [...document.querySelectorAll('#queue tbody tr td:first-child')].every((t) => t.textContent.endsWith('@' + d)) && document.querySelectorAll('#queue tbody tr').length > 0, args.queueDomain)
  const selection = await o.getAttribute('#selection', 'data-recipients')
  await operator.look('queue')
  let dialog = null
  o.once('dialog', async (d) => { dialog = d.message(); await d.accept() })
  await operator.activate('#bulk-retry')
  await o.waitForSelector('#queue-outcome')
  say({ step: 'bulk-retried', selection, dialog, outcome: await o.textContent('#queue-outcome') })
  await next()

  // Labels: negate one; settle a report.
  await o.goto(`${relay}/admin/labels`)
  await o.waitForSelector('#audit')
  await operator.fill('#label-uri', args.member.did)
  await operator.fill('#label-val', args.label)
  await operator.tabTo('#label-neg')
  await o.keyboard.press('Space')
  await operator.fill('#label-reason', 'walk: withdrawn by an operator')
  await operator.activate('#label-submit')
  await o.waitForSelector('#label-outcome.notice')
  const labelOutcome = await o.textContent('#label-outcome')
  const report = `article.report[data-id="${args.report}"]`
  await o.waitForSelector(report)
  await o.click(`${report} button[aria-label^="Mark report"]`)
  await o.waitForSelector(`${report}[data-status=acted]`)
  await operator.look('labels')
  say({ step: 'labels-done', labelOutcome })
  await next()

  // Logs and the inbound log.
  await o.goto(`${relay}/admin/logs`)
  await o.waitForSelector('#events-title')
  await o.waitForSelector('#events-title ~ * table, #events-title ~ p')
  await operator.look('logs')
  // Verdicts of one rule.
  await operator.fill('#log-rule', 'clean_sender_withdrawn')
  await operator.activate('#filter-logs')
  await o.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#verdicts-title ~ .scroll tbody tr')]
    return rows.length > 0 && rows.every((r) => r.children[1].textContent === 'clean_sender_withdrawn')
  })
  await o.goto(`${relay}/admin/inbound`)
  await o.waitForSelector('#inbound-title')
  await operator.look('inbound')

  // ---- Public pages, signed out -----------------------------------------------------------
  const s = stranger.page
  await s.goto(`${relay}/`)
  await s.waitForSelector('h1')
  await stranger.look('home')
  await s.goto(`${relay}/docs`)
  await s.waitForSelector('nav[aria-label="Documentation topics"]')
  await stranger.look('docs')
  const topics = await s.$$eval('nav[aria-label="Documentation topics"] a', (as) => as.map((a) => a.getAttribute('href')))
  for (const t of topics) {
    await s.goto(`${relay}${t}`)
    await s.waitForSelector('nav[aria-label="Documentation topics"] a[aria-current=page]')
    if (t === '/docs/http-api') await s.waitForSelector('article.operation')
    await stranger.look(t.slice(1).replaceAll('/', '-'))
  }
  await s.goto(`${relay}/faq`)
  await s.waitForSelector('.faq')
  await stranger.look('faq')
  await s.goto(`${relay}/enroll`)
  await s.waitForSelector('#identifier')
  await stranger.look('enroll')
  await s.goto(`${relay}/nowhere`)
  await s.waitForSelector('h1')
  await stranger.look('not-found')

  const all = people.map((p) => p.report())
  say({
    step: 'done',
    topics,
    consoleErrors: all.flatMap((r) => r.consoleErrors),
    accessibility: all.flatMap((r) => r.accessibility),
  })
} catch (e) {
  for (const p of people) await p.snap('failure').catch(() => {})
  say({ step: 'error', message: String(e && e.stack || e), urls: people.map((p) => p.page.url()) })
  process.exitCode = 1
} finally {
  await browser.close()
  close()
}
