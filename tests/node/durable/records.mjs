// Drives the real @deepstream/client for the durability tests (tests/stores.rs), one mode per run:
//   write PREFIX RECORDS   each record is written again and again with write acks, one write in
//                          flight per record; every acknowledged write is printed as
//                          `ACK <name> <version> <n>` the moment its ack arrives. Runs until
//                          the server goes away (or 60 s).
//   put PREFIX RECORDS TIMES  writes each record TIMES times with acks, then prints
//                          `PUT <name> <version> <json>` for each and exits.
//   read PREFIX RECORDS    prints `GOT <name> <version> <json>` for each record.
//   notify NAME...         record.notify(names) and prints `NOTIFIED` (or `ERROR <why>`).
//   watch NAME             subscribes and prints `UPDATE <version> <json>` or `DELETED` on changes.
import { createRequire } from 'node:module'

const require = createRequire(`${process.env.DS_CLIENT_HOME}/package.json`)
const { DeepstreamClient } = require('@deepstream/client')
const [mode, ...args] = process.argv.slice(2)
const say = line => process.stdout.write(line + '\n')

const client = new DeepstreamClient(process.env.DS_URL, { offlineEnabled: false, maxReconnectAttempts: 0 })
// A writer's errors go to stderr (the test's log): expected once its server is killed, and the
// only trace of why a write was refused before.
client.on('error', (error, event) => {
  if (mode === 'write') process.stderr.write(`writer: ${event || error}\n`)
  else say(`ERROR ${event || error}`)
})
await client.login({})
setTimeout(() => process.exit(0), 60000).unref()

if (mode === 'write') {
  const [prefix, count] = [args[0], Number(args[1])]
  client.on('connectionStateChanged', state => { if (state === 'CLOSED' || state === 'ERROR') process.exit(0) })
  const writer = async i => {
    const name = `${prefix}/${i}`
    const record = client.record.getRecord(name)
    await record.whenReady()
    for (let n = 1; ; n++) {
      try {
        await record.setWithAck({ n, pad: 'x'.repeat(64) })
      } catch (error) {
        process.stderr.write(`writer: ${name}: ${error}\n`)
        return
      }
      say(`ACK ${name} ${record.version} ${n}`)
    }
  }
  await Promise.all(Array.from({ length: count }, (_, i) => writer(i)))
} else if (mode === 'put') {
  const [prefix, count, times] = [args[0], Number(args[1]), Number(args[2])]
  const records = await Promise.all(Array.from({ length: count }, async (_, i) => {
    const record = client.record.getRecord(`${prefix}/${i}`)
    await record.whenReady()
    for (let n = 1; n <= times; n++) {
      await record.setWithAck({ n, i, nested: { list: [n, 'two', null, true], text: `é "q" ${i}` } })
    }
    return record
  }))
  for (const record of records) say(`PUT ${record.name} ${record.version} ${JSON.stringify(record.get())}`)
  client.close()
  process.exit(0)
} else if (mode === 'read') {
  const [prefix, count] = [args[0], Number(args[1])]
  for (let i = 0; i < count; i++) {
    const record = client.record.getRecord(`${prefix}/${i}`)
    await record.whenReady()
    say(`GOT ${record.name} ${record.version} ${JSON.stringify(record.get())}`)
    record.discard()
  }
  client.close()
  process.exit(0)
} else if (mode === 'notify') {
  try {
    await client.record.notify(args)
    say('NOTIFIED')
  } catch (error) {
    say(`ERROR ${error}`)
  }
  client.close()
  process.exit(0)
} else if (mode === 'watch') {
  const record = client.record.getRecord(args[0])
  await record.whenReady()
  say(`READY ${record.version} ${JSON.stringify(record.get())}`)
  record.subscribe(data => say(`UPDATE ${record.version} ${JSON.stringify(data)}`))
  record.on('delete', () => say('DELETED'))
  // Runs until the test stops it.
  await new Promise(() => {})
}
