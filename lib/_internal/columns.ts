/**
 * Columnar encoding of one column of checkpointed keys, states or times (checkpoint format 2):
 * a column of strings is one UTF-8 blob plus the UTF-16 length of each string (decoded with one
 * `TextDecoder` call and a slice per string), a column of numbers is a `Float64Array`, anything
 * else (Schema-encoded objects, tuples, mixed columns) is one JSON array. No per-value JSON, so
 * writing and reading 1 M keys costs a few copies instead of a parse of 1 M triples.
 *
 * Layout: byte 0 the kind (0 strings, 1 numbers, 2 JSON), bytes 4–7 the count (u32, little
 * endian); strings: `count` u32 lengths, then the UTF-8 text; numbers: `count` f64 from byte 8;
 * JSON: the UTF-8 JSON array from byte 8.
 * @internal
 */

const STRINGS = 0
const NUMBERS = 1
const JSON_VALUES = 2

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

/** Encodes `values` as one column. @internal */
export const encodeColumn = (values: ReadonlyArray<unknown>): Uint8Array => {
  const n = values.length
  let strings = true
  let numbers = true
  for (let i = 0; i < n && (strings || numbers); i++) {
    const t = typeof values[i]
    if (t !== "string") strings = false
    if (t !== "number") numbers = false
  }
  if (n > 0 && numbers) {
    const out = new Uint8Array(8 + 8 * n)
    header(out, NUMBERS, n)
    const f = new Float64Array(out.buffer, 8, n)
    for (let i = 0; i < n; i++) f[i] = values[i] as number
    return out
  }
  if (n > 0 && strings) {
    const lengths = new Uint32Array(n)
    let total = 0
    for (let i = 0; i < n; i++) total += lengths[i] = (values[i] as string).length
    const text = (values as ReadonlyArray<string>).join("")
    const start = 8 + 4 * n
    const out = new Uint8Array(start + 3 * total)
    header(out, STRINGS, n)
    out.set(new Uint8Array(lengths.buffer), 8)
    const { written } = encoder.encodeInto(text, out.subarray(start))
    return out.subarray(0, start + written)
  }
  const body = encoder.encode(JSON.stringify(values))
  const out = new Uint8Array(8 + body.length)
  header(out, JSON_VALUES, n)
  out.set(body, 8)
  return out
}

const header = (out: Uint8Array, kind: number, count: number): void => {
  out[0] = kind
  new DataView(out.buffer, out.byteOffset).setUint32(4, count, true)
}

/** A copy in a fresh buffer (`Buffer#slice`, unlike `Uint8Array#slice`, shares the pool's memory). */
const copy = (bytes: Uint8Array): Uint8Array => {
  const out = new Uint8Array(bytes.length)
  out.set(bytes)
  return out
}

/**
 * A column of strings as one string of them all, the UTF-16 length of each (no string per
 * value) and their UTF-8 bytes; `undefined` for a column of another kind. Throws an Error when it is malformed.
 * @internal
 */
export const decodeStrings = (
  bytes: Uint8Array,
): { readonly text: string; readonly lengths: Uint32Array; readonly utf8: Uint8Array } | undefined => {
  if (!(bytes instanceof Uint8Array) || bytes.length < 8) throw new Error("malformed column: too short")
  if (bytes[0] !== STRINGS) return undefined
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.length).getUint32(4, true)
  const start = 8 + 4 * n
  if (bytes.length < start) throw new Error(`malformed string column: ${bytes.length} bytes for ${n} lengths`)
  const lengths = new Uint32Array(copy(bytes.subarray(8, start)).buffer)
  const utf8 = bytes.subarray(start)
  return { text: decoder.decode(utf8), lengths, utf8 }
}

/** Decodes a column written by {@link encodeColumn}; throws an Error when it is malformed. @internal */
export const decodeColumn = (bytes: Uint8Array): ArrayLike<unknown> => {
  if (!(bytes instanceof Uint8Array) || bytes.length < 8) throw new Error("malformed column: too short")
  const kind = bytes[0]
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.length).getUint32(4, true)
  if (kind === NUMBERS) {
    if (bytes.length !== 8 + 8 * n) throw new Error(`malformed number column: ${bytes.length} bytes for ${n} values`)
    return new Float64Array(copy(bytes.subarray(8)).buffer) // copied: the view must be 8-byte aligned
  }
  if (kind === STRINGS) {
    const { text, lengths } = decodeStrings(bytes)!
    const out = new Array<string>(n)
    let at = 0
    for (let i = 0; i < n; i++) {
      const end = at + lengths[i]
      out[i] = text.slice(at, end)
      at = end
    }
    if (at !== text.length) throw new Error(`malformed string column: ${text.length} characters, lengths sum to ${at}`)
    return out
  }
  if (kind === JSON_VALUES) {
    const values = JSON.parse(decoder.decode(bytes.subarray(8)))
    if (!Array.isArray(values) || values.length !== n) throw new Error("malformed JSON column")
    return values
  }
  throw new Error(`malformed column: unknown kind ${kind}`)
}
