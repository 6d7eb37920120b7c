// Opens corestream's dashboard in headless Chromium (the machine's, driven by playwright-core),
// waits until its numbers move under load, and saves a screenshot.
// Usage: node dashboard.mjs URL SCREENSHOT.png   (prints one JSON line with what it saw)
import { chromium } from 'playwright-core'

const [url, screenshot] = process.argv.slice(2)
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium'
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync']
})
const result = { ok: false }
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  const errors = []
  page.on('pageerror', e => errors.push(e.message))
  await page.goto(url)
  const read = async () => page.evaluate(() => ({
    status: document.getElementById('status').textContent,
    deliveries: document.getElementById('deliveries').textContent,
    messages: document.getElementById('messages').textContent,
    connections: document.getElementById('connections').textContent,
    shards: document.getElementById('shards').textContent,
    // Pixels of the deliveries chart that are not its background.
    drawn: (() => {
      const c = document.getElementById('c-deliveries')
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data
      let n = 0
      for (let i = 0; i < d.length; i += 4) if (d[i] !== 0x12 || d[i + 1] !== 0x19 || d[i + 2] !== 0x20) n++
      return n
    })()
  }))
  const samples = []
  const deadline = Date.now() + 15000
  while (Date.now() < deadline) {
    await page.waitForTimeout(1100)
    const s = await read()
    samples.push(s)
    const moving = samples.filter(x => x.deliveries !== '-' && x.deliveries !== '0')
    if (moving.length >= 3 && s.status === 'live') break
  }
  await page.screenshot({ path: screenshot, fullPage: true })
  result.samples = samples
  result.errors = errors
  result.ok = errors.length === 0
} finally {
  await browser.close()
}
console.log(JSON.stringify(result))
