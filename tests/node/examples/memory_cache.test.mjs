// examples/memory_cache: records nobody holds any more are read back from the plugin's map.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { client, closeAll, within, uniq, sleep } from '../client/helpers.mjs'

after(closeAll)

test('a record written and let go is read back from the cache plugin', async () => {
  const writer = await within(client(), 5000, 'login')
  const name = uniq('cached')
  await within(writer.record.setDataWithAck(name, { kept: 'by the plugin' }), 5000, 'write')
  writer.close()
  // The record leaves the server's memory once no one holds it: only the plugin has it.
  await sleep(300)
  const reader = await within(client(), 5000, 'login')
  assert.deepEqual(await within(reader.record.snapshot(name), 5000, 'read'), { kept: 'by the plugin' })
  assert.equal(await within(reader.record.head(name), 5000, 'head'), 1)
})

test('a deleted record is gone from the plugin too', async () => {
  const c = await within(client(), 5000, 'login')
  const name = uniq('deleted')
  await within(c.record.setDataWithAck(name, { x: 1 }), 5000, 'write')
  const record = c.record.getRecord(name)
  await within(record.whenReady(), 5000, 'ready')
  await within(new Promise((resolve, reject) => { record.once('delete', resolve); record.delete() }), 5000, 'delete')
  await sleep(300)
  const other = await within(client(), 5000, 'login')
  assert.equal(await within(other.record.has(name), 5000, 'has'), false)
})
