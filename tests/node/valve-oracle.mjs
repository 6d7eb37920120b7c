// The reference's way of running a Valve rule, as the oracle of tests/valve_differential.rs:
// each rule is compiled with `new Function` over deepstream's argument list
// (src/services/permission/valve/rule-parser.ts) and called with `this` = {} and a cross
// reference function that behaves as rule-application.ts's. Reads one JSON case per line on
// stdin and writes one JSON result per line: {compile}, {need}, {threw} or {value}.
import { createInterface } from 'node:readline'

// The value as text, the same way corestream's `describe` writes it.
function describe (v, depth = 0) {
  if (depth > 20) return '...'
  if (v === undefined) return 'undefined'
  if (v === null) return 'null'
  switch (typeof v) {
    case 'boolean': return String(v)
    case 'number': return Object.is(v, -0) ? '-0' : String(v)
    case 'string': return JSON.stringify(v)
    case 'function': return 'function ' + v.name
  }
  if (v instanceof RegExp) return String(v)
  if (Array.isArray(v)) {
    const out = []
    for (let i = 0; i < v.length; i++) out.push(describe(v[i], depth + 1))
    return '[' + out.join(',') + ']'
  }
  const keys = Object.keys(v).sort()
  return '{' + keys.map(k => JSON.stringify(k) + ':' + describe(v[k], depth + 1)).join(',') + '}'
}

class Application {
  constructor (refs) {
    this.refs = new Map(Object.entries(refs).map(([k, v]) => [k, v === null ? null : JSON.parse(v)]))
    this.missing = []
    this.failed = false
  }

  crossReference (recordName) {
    const type = typeof recordName
    if (type !== 'undefined' && type !== 'string') {
      this.failed = true
      return
    }
    if (type === 'undefined' || recordName.indexOf('undefined') !== -1) return
    if (this.refs.has(recordName)) return this.refs.get(recordName)
    if (!this.missing.includes(recordName)) this.missing.push(recordName)
  }
}

function run (c) {
  const names = Object.keys(c.vars)
  let fn
  try {
    fn = Function.apply(null, ['_', 'user', 'data', 'oldData', 'now', 'action', 'name', ...names, `return ${c.rule};`])
  } catch (e) {
    return { compile: String(e) }
  }
  const app = new Application(c.refs)
  const user = {
    isAuthenticated: c.user.authenticated,
    id: c.user.id,
    data: c.user.data === null ? null : JSON.parse(c.user.data)
  }
  const data = c.data === null ? undefined : JSON.parse(c.data)
  const oldData = c.oldData === null ? null : JSON.parse(c.oldData)
  const args = [app.crossReference.bind(app), user, data, oldData, c.now, c.action, c.name, ...names.map(n => c.vars[n])]
  let result
  let threw = null
  try {
    result = fn.apply({}, args)
  } catch (e) {
    threw = e && e.name ? e.name : 'Error'
  }
  // `_()` of a value that is no name fails the rule at once; otherwise, while records
  // load, the reference ignores what the run gave and runs it again.
  if (app.failed) return { threw: 'crossreference' }
  if (app.missing.length > 0) return { need: app.missing }
  if (threw !== null) return { threw }
  return { value: describe(result) }
}

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (line.trim() === '') continue
  process.stdout.write(JSON.stringify(run(JSON.parse(line))) + '\n')
}
