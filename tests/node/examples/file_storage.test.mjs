// examples/file_storage: PHASE=write writes records; PHASE=read (after a restart) reads them.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { client, closeAll, within } from '../client/helpers.mjs'

after(closeAll)

const NAMES = ['profile/ann', 'odd name/with ünicode', 'deep/a/b/c']

if (process.env.PHASE === 'write') {
  test('records are written with acks', async () => {
    const c = await within(client(), 5000, 'login')
    for (const [i, name] of NAMES.entries()) {
      await within(c.record.setDataWithAck(name, { i, name }), 5000, `write ${name}`)
    }
    await within(c.record.setDataWithAck(NAMES[0], 'nested.path', 42), 5000, 'a patch')
  })
} else {
  test('after a restart every record is read back from the files', async () => {
    const c = await within(client(), 5000, 'login')
    for (const [i, name] of NAMES.entries()) {
      const expected = i === 0 ? { i, name, nested: { path: 42 } } : { i, name }
      assert.deepEqual(await within(c.record.snapshot(name), 5000, `read ${name}`), expected)
    }
    assert.equal(await within(c.record.head(NAMES[0]), 5000, 'head'), 2)
  })
}
