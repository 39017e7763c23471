/**
 * Kafka Fetch responses (versions 4–11, the non-flexible ones) decoded straight into
 * {@link RawRecord}s for partition reads: record batches of the v2 format (magic 2) without
 * compression are read in place (keys, values and header values are views of the response's
 * bytes); transaction markers (control batches) are skipped and, under `read_committed`, the
 * records of aborted transactions are left out the way Kafka's consumers do it (the response's
 * aborted-transaction list opens a producer's aborted transaction at its first offset, its ABORT
 * marker closes it; a transactional batch of a producer with an open aborted transaction is
 * left out). kafkajs's consumer filter gives the same records except where it departs from that
 * rule: it ends an aborted transaction at any record whose key is the ABORT marker's (a data
 * record's too), and opens at most one listed transaction per record. A record set this decoder
 * does not read (compressed batches, the older message formats) is reported as such, and the
 * caller decodes that response with its client.
 *
 * No client library here: receivers/kafkajs_client.ts sends the requests and hands the
 * response bytes over.
 * @internal
 */
import type { RawHeaders, RawRecord } from "../lib/_internal/kafkaClient.ts"

/** A record as read (one shape for every record: the hot path stays monomorphic). @internal */
export class Raw implements RawRecord {
  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly offset: number,
    readonly timestamp: number,
    readonly key: Uint8Array | null,
    readonly value: Uint8Array | null,
    readonly headers: RawHeaders,
  ) {}
}

/** Headers of a record that has none (shared). @internal */
export const noHeaders: RawHeaders = Object.freeze({})

/** One aborted transaction of a Fetch response: its producer and its first offset. @internal */
export interface AbortedTransaction {
  readonly producerId: number
  readonly firstOffset: number
}

/** One partition of a Fetch response, its record set not decoded yet. @internal */
export interface FetchedPartition {
  readonly partition: number
  readonly errorCode: number
  readonly highWatermark: number
  /** -1 before version 4. */
  readonly lastStableOffset: number
  /** `null` when the broker sent none (read_uncommitted). */
  readonly abortedTransactions: ReadonlyArray<AbortedTransaction> | null
  /** The record set's bytes (empty when the broker sent none). */
  readonly recordSet: Uint8Array
}

/** A decoded Fetch response, in the layout kafkajs's response `parse` checks for error codes. @internal */
export interface FetchResponse {
  readonly throttleTime: number
  readonly clientSideThrottleTime: number
  readonly errorCode: number
  readonly responses: ReadonlyArray<
    { readonly topicName: string; readonly partitions: ReadonlyArray<FetchedPartition> }
  >
}

/** Fetch versions {@link decodeFetchResponse} reads. @internal */
export const fetchVersions = { min: 4, max: 11 } as const

/** A malformed response: `what` says where. */
const malformed = (what: string): Error => new Error(`Cannot decode a Fetch response: ${what}`)

const utf8 = new TextDecoder("utf-8", { fatal: false })

/** Reads a Kafka Fetch response body (after the correlation id) of version 4–11. @internal */
export const decodeFetchResponse = (payload: Uint8Array, version: number): FetchResponse => {
  if (version < fetchVersions.min || version > fetchVersions.max) {
    throw malformed(`version ${version} is not one of ${fetchVersions.min}–${fetchVersions.max}`)
  }
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength)
  let at = 0
  const need = (n: number, what: string) => {
    if (at + n > payload.byteLength) throw malformed(`it ends inside ${what} (at byte ${at} of ${payload.byteLength})`)
  }
  const int16 = (what: string) => (need(2, what), at += 2, view.getInt16(at - 2))
  const int32 = (what: string) => (need(4, what), at += 4, view.getInt32(at - 4))
  const int64 = (what: string) => (need(8, what), at += 8, view.getInt32(at - 8) * 4294967296 + view.getUint32(at - 4))
  const throttle = int32("the throttle time")
  let errorCode = 0
  if (version >= 7) {
    errorCode = int16("the error code")
    int32("the session id")
  }
  const topicCount = int32("the topic count")
  const responses: Array<{ topicName: string; partitions: Array<FetchedPartition> }> = []
  for (let t = 0; t < topicCount; t++) {
    const nameLength = int16("a topic name")
    need(Math.max(0, nameLength), "a topic name")
    const topicName = utf8.decode(payload.subarray(at, at + nameLength))
    at += Math.max(0, nameLength)
    const partitionCount = int32("a partition count")
    const partitions: Array<FetchedPartition> = []
    for (let p = 0; p < partitionCount; p++) {
      const partition = int32("a partition id")
      const partitionError = int16("a partition error code")
      const highWatermark = int64("a high-water mark")
      const lastStableOffset = int64("a last stable offset")
      if (version >= 5) int64("a log start offset")
      const abortedCount = int32("an aborted-transaction count")
      let abortedTransactions: Array<AbortedTransaction> | null = null
      if (abortedCount >= 0) {
        abortedTransactions = new Array(abortedCount)
        for (let i = 0; i < abortedCount; i++) {
          const producerId = int64("an aborted transaction")
          abortedTransactions[i] = { producerId, firstOffset: int64("an aborted transaction") }
        }
      }
      if (version >= 11) int32("a preferred read replica")
      const size = int32("a record set size")
      let recordSet = payload.subarray(at, at)
      if (size > 0) {
        // a response cut by the broker's size limit keeps what it has (partial batches are ignored)
        const end = Math.min(payload.byteLength, at + size)
        recordSet = payload.subarray(at, end)
        at = end
      }
      partitions.push({
        partition,
        errorCode: partitionError,
        highWatermark,
        lastStableOffset,
        abortedTransactions,
        recordSet,
      })
    }
    responses.push({ topicName, partitions })
  }
  // kafkajs reports a throttle time of 0 and throttles on the broker's (KIP-219) itself
  return { throttleTime: 0, clientSideThrottleTime: throttle, errorCode, responses }
}

const BATCH_HEADER = 61
const COMPRESSION_MASK = 0x07
const LOG_APPEND_TIME = 0x08
const TRANSACTIONAL = 0x10
const CONTROL = 0x20

/**
 * The offset after the last complete batch of `recordSet` (-1 when it has none), or `undefined`
 * when {@link decodeRecords} cannot read it (a batch that is compressed or not of the v2 format):
 * then the caller decodes the response another way.
 * @internal
 */
export const scanRecordSet = (recordSet: Uint8Array): number | undefined => {
  const view = new DataView(recordSet.buffer, recordSet.byteOffset, recordSet.byteLength)
  const n = recordSet.byteLength
  let next = -1
  let at = 0
  while (at + 17 <= n) {
    if (recordSet[at + 16] !== 2) return undefined
    const length = view.getInt32(at + 8)
    if (at + 12 + length > n) break // a partial batch at the end: not read
    if (length < BATCH_HEADER - 12) return undefined
    if ((view.getInt16(at + 21) & COMPRESSION_MASK) !== 0) return undefined
    next = view.getInt32(at) * 4294967296 + view.getUint32(at + 4) + view.getInt32(at + 23) + 1
    at += 12 + length
  }
  return next
}

/** What {@link decodeRecords} read. @internal */
export interface DecodedRecords {
  /** Records at offsets in `[from, until)`, control records and aborted ones left out. */
  readonly records: Array<RawRecord>
  /** The offset after the last complete batch (-1 when the record set has none). */
  readonly next: number
}

/**
 * The records of a record set of v2 batches without compression (see {@link scanRecordSet})
 * at offsets in `[from, until)`. Control batches are skipped; with `aborted` (the response's
 * aborted transactions, present under read_committed) the transactional batches of a producer
 * are skipped from its aborted transaction's first offset up to its ABORT marker. A partial
 * batch at the end (the broker's size limit) is ignored.
 * @internal
 */
export const decodeRecords = (
  topic: string,
  partition: number,
  recordSet: Uint8Array,
  aborted: ReadonlyArray<AbortedTransaction> | null,
  from: number,
  until: number,
): DecodedRecords => {
  const bytes = recordSet
  // keys and values are plain views of the response's memory (a Buffer's `subarray` costs more, in Deno most)
  const memory = bytes.buffer
  const base = bytes.byteOffset
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const n = bytes.byteLength
  const out: Array<RawRecord> = []
  // aborted transactions by first offset, opened as batches reach them
  const pendingAborts = aborted === null || aborted.length === 0
    ? undefined
    : [...aborted].sort((a, b) => a.firstOffset - b.firstOffset)
  let nextAbort = 0
  let abortedProducers: Set<number> | undefined
  let next = -1
  let at = 0
  // header keys read so far (the first few), reused while keys repeat (they usually do)
  const keyStarts: Array<number> = []
  const keyLengths: Array<number> = []
  const keyNames: Array<string> = []

  /** Reads a zigzag varint at `at` (advancing it), exact to 2^53. */
  const varint = (end: number): number => {
    let b = bytes[at++]
    let u = b & 0x7f
    if (b >= 0x80) {
      b = bytes[at++]
      u |= (b & 0x7f) << 7
      if (b >= 0x80) {
        b = bytes[at++]
        u |= (b & 0x7f) << 14
        if (b >= 0x80) {
          b = bytes[at++]
          u |= (b & 0x7f) << 21
          if (b >= 0x80) return longVarint(u >>> 0, end)
        }
      }
    }
    if (at > end) throw malformed(`a varint runs past its record batch in "${topic}" partition ${partition}`)
    return (u >>> 1) ^ -(u & 1)
  }
  /** The rest of a varint longer than 4 bytes (timestamps deltas, in practice). */
  const longVarint = (low: number, end: number): number => {
    let u = low
    let scale = 2 ** 28
    for (let i = 4; i < 10; i++) {
      const b = bytes[at++]
      u += (b & 0x7f) * scale
      scale *= 128
      if (b < 0x80) break
      if (i === 9) throw malformed(`a varint of more than 10 bytes in "${topic}" partition ${partition}`)
    }
    if (at > end) throw malformed(`a varint runs past its record batch in "${topic}" partition ${partition}`)
    // zigzag, in floating point: u even → u / 2, odd → -(u + 1) / 2
    return u % 2 === 0 ? u / 2 : -(u + 1) / 2
  }
  /** `length` bytes at `at` as a view (null for -1), advancing `at`. */
  const bytesOf = (length: number, end: number): Uint8Array | null => {
    if (length < 0) {
      if (length === -1) return null
      throw malformed(`a negative length ${length} in "${topic}" partition ${partition}`)
    }
    const start = at
    at += length
    if (at > end) throw malformed(`a field runs past its record in "${topic}" partition ${partition}`)
    return new Uint8Array(memory, base + start, length)
  }

  while (at + 12 <= n) {
    const batchStart = at
    const baseOffset = view.getInt32(at) * 4294967296 + view.getUint32(at + 4)
    const length = view.getInt32(at + 8)
    const batchEnd = at + 12 + length
    if (batchEnd > n) break // a partial batch at the end: the next fetch starts at it
    if (length < BATCH_HEADER - 12 || bytes[at + 16] !== 2) {
      throw malformed(`the batch at offset ${baseOffset} of "${topic}" partition ${partition} is not a v2 batch`)
    }
    const attributes = view.getInt16(at + 21)
    if ((attributes & COMPRESSION_MASK) !== 0) {
      throw malformed(`the batch at offset ${baseOffset} of "${topic}" partition ${partition} is compressed`)
    }
    const lastOffset = baseOffset + view.getInt32(at + 23)
    const firstTimestamp = view.getInt32(at + 27) * 4294967296 + view.getUint32(at + 31)
    const maxTimestamp = view.getInt32(at + 35) * 4294967296 + view.getUint32(at + 39)
    const producerId = view.getInt32(at + 43) * 4294967296 + view.getUint32(at + 47)
    const count = view.getInt32(at + 57)
    at = batchStart + BATCH_HEADER
    next = lastOffset + 1

    if (pendingAborts !== undefined) {
      while (nextAbort < pendingAborts.length && pendingAborts[nextAbort].firstOffset <= lastOffset) {
        ;(abortedProducers ??= new Set()).add(pendingAborts[nextAbort++].producerId)
      }
    }
    if ((attributes & CONTROL) !== 0) {
      // a transaction marker: its one record's key is (version int16, type int16), type 0 = ABORT
      if (abortedProducers !== undefined && count > 0) {
        varint(batchEnd) // length
        at++ // attributes
        varint(batchEnd) // timestamp delta
        varint(batchEnd) // offset delta
        const key = bytesOf(varint(batchEnd), batchEnd)
        if (key !== null && key.length >= 4 && key[2] === 0 && key[3] === 0) abortedProducers.delete(producerId)
      }
      at = batchEnd
      continue
    }
    if (
      lastOffset < from || baseOffset >= until ||
      ((attributes & TRANSACTIONAL) !== 0 && abortedProducers !== undefined && abortedProducers.has(producerId))
    ) {
      at = batchEnd
      continue
    }
    const logAppendTime = (attributes & LOG_APPEND_TIME) !== 0
    for (let i = 0; i < count; i++) {
      const recordLength = varint(batchEnd)
      const recordEnd = at + recordLength
      if (recordLength < 0 || recordEnd > batchEnd) {
        throw malformed(
          `a record of the batch at offset ${baseOffset} of "${topic}" partition ${partition} runs past it`,
        )
      }
      at++ // attributes (unused)
      const timestampDelta = varint(recordEnd)
      const offset = baseOffset + varint(recordEnd)
      const key = bytesOf(varint(recordEnd), recordEnd)
      const value = bytesOf(varint(recordEnd), recordEnd)
      const headerCount = varint(recordEnd)
      let headers = noHeaders
      if (headerCount > 0) {
        const h: Record<string, Uint8Array | string | Array<Uint8Array | string> | undefined> = {}
        for (let j = 0; j < headerCount; j++) {
          const keyLength = varint(recordEnd)
          if (keyLength < 0) throw malformed(`a header without a key in "${topic}" partition ${partition}`)
          const keyAt = at
          at += keyLength
          if (at > recordEnd) throw malformed(`a header key runs past its record in "${topic}" partition ${partition}`)
          let name: string | undefined
          for (let k = 0; k < keyNames.length; k++) {
            if (keyLengths[k] === keyLength && sameBytes(bytes, keyAt, keyStarts[k], keyLength)) {
              name = keyNames[k]
              break
            }
          }
          if (name === undefined) {
            name = utf8.decode(bytes.subarray(keyAt, at))
            if (keyNames.length < 8) {
              keyStarts.push(keyAt)
              keyLengths.push(keyLength)
              keyNames.push(name)
            }
          }
          // kafkajs's header values: bytes, or null for a null value (kept as it gives them)
          const v = bytesOf(varint(recordEnd), recordEnd) as Uint8Array
          const prior = Object.hasOwn(h, name) ? h[name] : undefined
          const merged = prior === undefined ? v : Array.isArray(prior) ? [...prior, v] : [prior, v]
          if (name === "__proto__") Object.defineProperty(h, name, { value: merged, enumerable: true, writable: true })
          else h[name] = merged
        }
        headers = h
      }
      if (at !== recordEnd) {
        throw malformed(
          `a record of the batch at offset ${baseOffset} of "${topic}" partition ${partition} has ${
            recordEnd - at
          } bytes more than its fields`,
        )
      }
      if (offset < from || offset >= until) continue
      out.push(
        new Raw(
          topic,
          partition,
          offset,
          logAppendTime ? maxTimestamp : firstTimestamp + timestampDelta,
          key,
          value,
          headers,
        ),
      )
    }
    at = batchEnd
  }
  return { records: out, next }
}

const sameBytes = (bytes: Uint8Array, a: number, b: number, length: number): boolean => {
  for (let i = 0; i < length; i++) if (bytes[a + i] !== bytes[b + i]) return false
  return true
}
