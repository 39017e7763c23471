/**
 * Incremental UTF-8 line splitter for byte streams (sockets, files): splits on `\n`, `\r\n`
 * and `\r` like Java's `BufferedReader.readLine`, with a bound on the length of a line.
 *
 * Each pushed chunk is scanned natively for its last terminator; everything before it is
 * decoded with one `TextDecoder` call and split in one `String.prototype.split`. Only the
 * unterminated tail is copied, into a buffer that never grows past `maxLineBytes`.
 *
 * @module
 */
import { isUtf8 } from "node:buffer"
import { Cause, Effect, Pull, Stream } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import { LineTooLongError } from "../lib/Errors.ts"

const LF = 10
const CR = 13
const TERMINATORS = /\r\n|\r|\n/
const INITIAL_PENDING = 1024
const EMPTY: ReadonlyArray<string> = Object.freeze([])

/** The last index of `byte` in `bytes[from, length)`, or -1 (a short scan from the end). */
const lastIndexAfter = (bytes: Uint8Array, byte: number, from: number): number => {
  for (let i = bytes.length - 1; i >= from; i--) if (bytes[i] === byte) return i
  return -1
}

/**
 * `\n` in `bytes[from, to)`, four bytes at a time where the view is aligned (SWAR: a byte
 * equal to `\n` becomes a set high bit of its lane, and the lanes are summed).
 */
const countLF = (bytes: Uint8Array, from: number, to: number): number => {
  let count = 0
  let i = from
  const base = bytes.byteOffset
  while (i < to && ((base + i) & 3) !== 0) if (bytes[i++] === LF) count++
  const words = (to - i) >>> 2
  if (words > 0) {
    const w = new Uint32Array(bytes.buffer, base + i, words)
    for (let k = 0; k < words; k++) {
      const x = w[k] ^ 0x0a0a0a0a
      const zero = ~(((x & 0x7f7f7f7f) + 0x7f7f7f7f) | x) & 0x80808080
      if (zero !== 0) count += Math.imul(zero >>> 7, 0x01010101) >>> 24
    }
    i += words << 2
  }
  while (i < to) if (bytes[i++] === LF) count++
  return count
}

/** Bun (JavaScriptCore), where some string and byte operations cost differently than on V8. */
const onJavaScriptCore = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined"
const checkDecoder = new TextDecoder("utf-8", { ignoreBOM: true })
const LFS = /\n/g

/**
 * The lines of complete-line bytes that hold only valid UTF-8 and no `\r` (so their lines are
 * exactly their `\n`-separated pieces, and no character was replaced), or -1. Two ways, each the
 * faster on its engine (measured on 64 KiB chunks of short lines): JavaScriptCore checks the
 * bytes natively (`isUtf8`, `indexOf`) and counts them four at a time; V8, whose typed-array
 * `indexOf` is a slow scan, decodes them (its ASCII decoding is a copy) and counts with a
 * regular expression. Either is about a third of decoding and counting with `indexOf`.
 */
const plainLines: (bytes: Uint8Array) => number = onJavaScriptCore
  ? (bytes) => !isUtf8(bytes) || bytes.indexOf(CR) !== -1 ? -1 : countLF(bytes, 0, bytes.length) + 1
  : (bytes) => {
    const text = checkDecoder.decode(bytes)
    if (text.indexOf("\uFFFD") !== -1 || text.indexOf("\r") !== -1) return -1
    const lfs = text.match(LFS)
    return lfs === null ? 1 : lfs.length + 1
  }

/**
 * Default limit on the length of one line, in bytes without its terminator: 1 MiB.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxLineBytes = 1_048_576

/** The limit, defaulted; throws a `RangeError` (a programming error) unless a positive integer. */
const checkMaxLineBytes = (maxLineBytes: number | undefined): number => {
  const limit = maxLineBytes ?? defaultMaxLineBytes
  if (!Number.isSafeInteger(limit) || limit <= 0) {
    throw new RangeError(`maxLineBytes must be a positive integer, got ${limit}`)
  }
  return limit
}

/**
 * Options of {@link makeLineDecoder}.
 *
 * @since 0.1.0
 * @category models
 */
export interface LineDecoderOptions {
  /** Longest accepted line in bytes, terminator excluded. Default {@link defaultMaxLineBytes}. */
  readonly maxLineBytes?: number | undefined
  /** Where the bytes come from, for the `LineTooLongError` (e.g. `socket localhost:9999`). */
  readonly source: string
  /**
   * Called (by {@link splitUtf8Lines}) with the number of invalid UTF-8 sequences a pulled
   * chunk held; they are replaced with U+FFFD either way.
   */
  readonly onMalformed?: ((count: number) => Effect.Effect<void>) | undefined
  /**
   * When given, {@link splitUtf8Lines} hands a pulled chunk's complete lines to it as their
   * bytes (a {@link LinesText}) instead of decoding them into an array of strings, whenever they
   * hold no `\r`. The lines of chunks it does not take this way are emitted as usual, in order:
   * each call completes before the next chunk is pulled.
   */
  readonly packed?: ((lines: LinesText) => Effect.Effect<void>) | undefined
}

/**
 * Complete lines kept as the bytes they came in: each run holds whole lines separated by `\n`
 * (none contains `\r`), without a final terminator; `count` lines in all. {@link linesOf}
 * gives the strings (with `malformed` counted when the bytes arrived, the decoding then is the
 * same as it would have been).
 *
 * @since 0.1.0
 * @category models
 */
export interface LinesText {
  readonly runs: ReadonlyArray<Uint8Array>
  readonly count: number
}

const lateDecoder = new TextDecoder("utf-8", { ignoreBOM: true })

/**
 * The lines of `runs` (see {@link LinesText}), appended to `into` when given.
 *
 * @since 0.1.0
 * @category combinators
 */
export const linesOf = (runs: ReadonlyArray<Uint8Array>, into?: Array<string>): Array<string> => {
  if (into === undefined && runs.length > 1 && (runs.length <= 8 || onJavaScriptCore)) {
    // run by run, the arrays joined natively: a joined text would be copied once more before
    // being split (a line spanning two chunks makes two runs of each); V8 joins many runs faster
    const pieces: Array<Array<string>> = new Array(runs.length)
    for (let r = 0; r < runs.length; r++) pieces[r] = lateDecoder.decode(runs[r]).split("\n")
    let lines = pieces[0]
    for (let from = 1; from < pieces.length; from += 1024) lines = lines.concat(...pieces.slice(from, from + 1024))
    return lines
  }
  const text = runs.length === 1 ? lateDecoder.decode(runs[0]) : runs.map((r) => lateDecoder.decode(r)).join("\n")
  const lines = text.split("\n")
  if (into === undefined) return lines
  for (let i = 0; i < lines.length; i++) into.push(lines[i])
  return into
}

/**
 * A stateful line splitter. Not thread-safe; one per connection or file.
 *
 * Failure: when a line (terminated or not) exceeds `maxLineBytes`, the decoder fails with a
 * `LineTooLongError` and never keeps more than `maxLineBytes` of a line. The lines completed
 * before the bad one are not lost:
 * - with `into`, `push` appends them to `into`, then throws;
 * - without `into`, `push` returns them (if there are any) and sets `failure`; otherwise it
 *   throws.
 * Once failed, every later `push` / `end` throws the same error.
 *
 * @since 0.1.0
 * @category models
 */
export interface LineDecoder {
  /**
   * Feeds bytes; returns the lines they complete (appended to `into` when given, which is then
   * returned). Over-long line: see the failure rules above.
   */
  readonly push: (bytes: Uint8Array, into?: Array<string>) => ReadonlyArray<string>
  /**
   * Like `push` without `into`, but when the completed lines hold no `\r` returns them as one
   * {@link LinesText} instead of an array (the same failure rules).
   */
  readonly pushText: (bytes: Uint8Array) => ReadonlyArray<string> | LinesText
  /** Ends the input: returns the final unterminated line if it is non-empty. */
  readonly end: (into?: Array<string>) => ReadonlyArray<string>
  /** The error that failed the decoder, if any. */
  readonly failure: LineTooLongError | undefined
  /** Bytes of the unterminated line currently buffered. */
  readonly pendingBytes: number
  /** Invalid UTF-8 sequences replaced with U+FFFD so far. */
  readonly malformed: number
}

/**
 * Creates a {@link LineDecoder}. Invalid UTF-8 decodes to U+FFFD; a byte-order mark is kept
 * (as Java's `InputStreamReader` does). Multi-byte characters may be split across chunks.
 *
 * @example
 * ```ts
 * const decoder = makeLineDecoder({ source: "example" })
 * decoder.push(new TextEncoder().encode("a\r")) // ["a"]
 * decoder.push(new TextEncoder().encode("\nb"))  // [] (the \n completes "\r\n")
 * decoder.end()                                  // ["b"]
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeLineDecoder = (options: LineDecoderOptions): LineDecoder => {
  const maxLineBytes = checkMaxLineBytes(options.maxLineBytes)
  const source = options.source
  const decoder = new TextDecoder("utf-8", { ignoreBOM: true })
  const streaming = { stream: true } as const

  let pending = new Uint8Array(0)
  let pendingLen = 0
  /** The previous chunk ended with `\r`: a `\n` starting the next one belongs to it. */
  let skipLF = false
  let failure: LineTooLongError | undefined
  let malformed = 0

  /** Counts U+FFFD in decoded text that did not come from an encoded U+FFFD (EF BF BD). */
  const countMalformed = (text: string, regions: ReadonlyArray<readonly [Uint8Array, number, number]>): void => {
    let replaced = 0
    for (let i = text.indexOf("\uFFFD"); i !== -1; i = text.indexOf("\uFFFD", i + 1)) replaced++
    if (replaced === 0) return
    let encoded = 0
    for (const [bytes, from, to] of regions) {
      for (let i = bytes.indexOf(0xef, from); i !== -1 && i + 2 < to; i = bytes.indexOf(0xef, i + 1)) {
        if (bytes[i + 1] === 0xbf && bytes[i + 2] === 0xbd) encoded++
      }
    }
    if (replaced > encoded) malformed += replaced - encoded
  }

  const markFailed = (): LineTooLongError => {
    failure = new LineTooLongError({ source, limit: maxLineBytes })
    pending = new Uint8Array(0)
    pendingLen = 0
    skipLF = false
    return failure
  }

  /**
   * Fails after `lines` (the lines completed before the bad one): throws, unless there is no
   * `into` to hand them over in, in which case they are returned and the next call throws.
   */
  const failAfter = (lines: ReadonlyArray<string>, into: Array<string> | undefined): ReadonlyArray<string> => {
    const error = markFailed()
    if (into === undefined && lines.length > 0) return lines
    throw error
  }

  /** Copies `bytes[from, to)` after the pending bytes; fails if the line gets too long. */
  const appendPending = (bytes: Uint8Array, from: number, to: number): void => {
    const length = to - from
    if (length === 0) return
    const needed = pendingLen + length
    if (needed > maxLineBytes) throw markFailed()
    if (needed > pending.length) {
      let size = Math.max(pending.length * 2, INITIAL_PENDING)
      while (size < needed) size *= 2
      const grown = new Uint8Array(Math.min(size, maxLineBytes))
      grown.set(pending.subarray(0, pendingLen))
      pending = grown
    }
    pending.set(bytes.subarray(from, to), pendingLen)
    pendingLen = needed
  }

  /**
   * Decodes pending bytes + `bytes[from, to)` (complete lines joined by terminators); `asText`:
   * as a {@link LinesText} when the text holds no `\r`.
   */
  const decodeLines = (
    bytes: Uint8Array,
    from: number,
    to: number,
    into: Array<string> | undefined,
    asText = false,
  ): ReadonlyArray<string> | LinesText => {
    if (asText && into === undefined) {
      // Kept as bytes, decoded when the lines are needed (a string per line held until the batch
      // would be copied by every young collection). Only checked and counted now, without
      // decoding where the engine allows; the pending bytes start the first line, which alone is
      // copied (the pending buffer is reused), the rest is a view of `bytes`.
      let runs: Array<Uint8Array>
      let count: number
      if (pendingLen === 0) {
        runs = [bytes.subarray(from, to)]
        count = plainLines(runs[0])
      } else {
        const lf = bytes.indexOf(LF, from)
        const firstEnd = lf === -1 || lf >= to ? to : lf
        const first = new Uint8Array(pendingLen + firstEnd - from)
        first.set(pending.subarray(0, pendingLen))
        first.set(bytes.subarray(from, firstEnd), pendingLen)
        count = plainLines(first)
        if (firstEnd === to) runs = [first]
        else {
          runs = [first, bytes.subarray(firstEnd + 1, to)]
          const rest = count === 1 ? plainLines(runs[1]) : -1
          count = rest === -1 ? -1 : count + rest
        }
      }
      if (count !== -1) {
        if (pendingLen > 0) {
          pendingLen = 0
          if (pending.length > INITIAL_PENDING * 64) pending = new Uint8Array(0)
        }
        return { runs, count }
      }
      // a `\r` or an invalid byte: decoded now, and counted, as below
    }
    let text: string
    if (pendingLen > 0) {
      text = decoder.decode(pending.subarray(0, pendingLen), streaming) + decoder.decode(bytes.subarray(from, to))
      if (text.indexOf("\uFFFD") !== -1) countMalformed(text, [[pending, 0, pendingLen], [bytes, from, to]])
      pendingLen = 0
      if (pending.length > INITIAL_PENDING * 64) pending = new Uint8Array(0)
    } else {
      text = decoder.decode(bytes.subarray(from, to))
      if (text.indexOf("\uFFFD") !== -1) countMalformed(text, [[bytes, from, to]])
    }
    const plain = text.indexOf("\r") === -1
    const lines = plain ? text.split("\n") : text.split(TERMINATORS)
    if (into === undefined) return lines
    for (let i = 0; i < lines.length; i++) into.push(lines[i])
    return into
  }

  /**
   * Slow path, only when a region of complete lines is longer than the limit: returns the
   * start of the terminator ending the last good line before the first over-long one, -1 if
   * the first line (including the pending bytes) is already too long, or `to` if none is.
   */
  const firstTooLong = (bytes: Uint8Array, from: number, to: number): number => {
    let lineStart = from
    let carried = pendingLen
    let lastGoodEnd = -1
    let i = from
    while (i < to) {
      const b = bytes[i]
      if (b === LF || b === CR) {
        if (carried + (i - lineStart) > maxLineBytes) return lastGoodEnd
        lastGoodEnd = i
        carried = 0
        i += b === CR && i + 1 < to && bytes[i + 1] === LF ? 2 : 1
        lineStart = i
      } else {
        i++
      }
    }
    return carried + (to - lineStart) > maxLineBytes ? lastGoodEnd : to
  }

  const push = (bytes: Uint8Array, into?: Array<string>): ReadonlyArray<string> =>
    pushBytes(bytes, into, false) as ReadonlyArray<string>

  const pushBytes = (
    bytes: Uint8Array,
    into: Array<string> | undefined,
    asText: boolean,
  ): ReadonlyArray<string> | LinesText => {
    if (failure !== undefined) throw failure
    const n = bytes.length
    if (n === 0) return into ?? EMPTY
    let from = 0
    if (skipLF) {
      skipLF = false
      if (bytes[0] === LF) from = 1
    }
    // the last terminator: the last `\n`, unless a `\r` follows it (search only after it)
    const lastLF = bytes.lastIndexOf(LF)
    const lastCR = lastLF === -1 ? bytes.lastIndexOf(CR) : lastIndexAfter(bytes, CR, lastLF + 1)
    const last = lastCR > lastLF ? lastCR : lastLF
    if (last < from) {
      appendPending(bytes, from, n)
      return into ?? EMPTY
    }
    // [from, end) holds complete lines; the terminator of the last one is [end, next).
    let end = last
    const next = last + 1
    if (bytes[last] === CR) {
      skipLF = next === n
    } else if (last > from && bytes[last - 1] === CR) {
      end = last - 1
    }
    let goodEnd = end
    if (pendingLen + (end - from) > maxLineBytes) {
      // the region may hold an over-long line: find it (rare, slow path)
      goodEnd = firstTooLong(bytes, from, end)
    }
    if (goodEnd === end && n - next <= maxLineBytes) {
      const lines = decodeLines(bytes, from, end, into, asText)
      appendPending(bytes, next, n)
      return lines
    }
    const lines = goodEnd >= 0 ? decodeLines(bytes, from, goodEnd, into) as ReadonlyArray<string> : into ?? EMPTY
    return failAfter(lines, into)
  }

  const end = (into?: Array<string>): ReadonlyArray<string> => {
    if (failure !== undefined) throw failure
    skipLF = false
    if (pendingLen === 0) return into ?? EMPTY
    const line = decoder.decode(pending.subarray(0, pendingLen))
    if (line.indexOf("\uFFFD") !== -1) countMalformed(line, [[pending, 0, pendingLen]])
    pendingLen = 0
    pending = new Uint8Array(0)
    if (into === undefined) return [line]
    into.push(line)
    return into
  }

  return {
    push,
    pushText: (bytes) => pushBytes(bytes, undefined, true),
    end,
    get failure() {
      return failure
    },
    get pendingBytes() {
      return pendingLen
    },
    get malformed() {
      return malformed
    },
  }
}

/**
 * Splits a byte stream into UTF-8 lines with a {@link LineDecoder} (one per run of the
 * stream). Each pulled batch of byte chunks becomes one array of lines; no Effect runs per
 * line. At the end of input the final unterminated line is emitted if non-empty. An over-long
 * line fails the stream with `LineTooLongError` after the lines completed before it. Throws a
 * `RangeError` at once if `maxLineBytes` is not a positive integer.
 *
 * @since 0.1.0
 * @category combinators
 */
export const splitUtf8Lines = (
  options: LineDecoderOptions,
): <E, R>(bytes: Stream.Stream<Uint8Array, E, R>) => Stream.Stream<string, E | LineTooLongError, R> => {
  const checked: LineDecoderOptions = { source: options.source, maxLineBytes: checkMaxLineBytes(options.maxLineBytes) }
  return <E, R>(bytes: Stream.Stream<Uint8Array, E, R>) =>
    Stream.transformPull(
      bytes,
      (pull) => Effect.sync(() => linesPull(makeLineDecoder(checked), pull, options.onMalformed, options.packed)),
    )
}

const isLinesText = (lines: ReadonlyArray<string> | LinesText): lines is LinesText => !Array.isArray(lines)

/** A pull of line arrays over a pull of byte-chunk arrays (packed lines go to `packed`). */
const linesPull = <E>(
  decoder: LineDecoder,
  pull: Pull.Pull<NonEmptyReadonlyArray<Uint8Array>, E, void>,
  onMalformed?: ((count: number) => Effect.Effect<void>) | undefined,
  packed?: ((lines: LinesText) => Effect.Effect<void>) | undefined,
): Pull.Pull<NonEmptyReadonlyArray<string>, E | LineTooLongError> => {
  let failure: LineTooLongError | undefined
  let ended = false
  const endOfInput = Effect.succeed(undefined)
  const decode = (chunk: NonEmptyReadonlyArray<Uint8Array> | undefined): ReadonlyArray<string> | LinesText => {
    if (chunk === undefined) {
      ended = true
      return decoder.end()
    }
    if (chunk.length === 1) {
      // one chunk (the usual case): the decoder's own array, no copy
      try {
        const lines = packed === undefined ? decoder.push(chunk[0]) : decoder.pushText(chunk[0])
        if (decoder.failure !== undefined) failure = decoder.failure // returned the lines before it
        return lines
      } catch (error) {
        if (!(error instanceof LineTooLongError)) throw error
        failure = error // no lines completed before it
        return EMPTY
      }
    }
    if (packed !== undefined) {
      // several chunks: one text when every chunk's lines come as text (the usual case), else
      // everything as one array from the first chunk whose lines do not
      const runs: Array<Uint8Array> = []
      let count = 0
      let out: Array<string> | undefined
      try {
        for (let i = 0; i < chunk.length; i++) {
          if (out !== undefined) {
            decoder.push(chunk[i], out)
            continue
          }
          const lines = decoder.pushText(chunk[i])
          if (isLinesText(lines)) {
            for (const r of lines.runs) runs.push(r)
            count += lines.count
            continue
          }
          if (lines.length === 0 && decoder.failure === undefined) continue
          out = runs.length === 0 ? [] : linesOf(runs)
          for (let j = 0; j < lines.length; j++) out.push(lines[j])
          if (decoder.failure !== undefined) {
            failure = decoder.failure // returned the lines before it
            return out
          }
        }
      } catch (error) {
        if (!(error instanceof LineTooLongError)) throw error
        failure = error // after the lines completed before it
        return out ?? (runs.length === 0 ? [] : linesOf(runs))
      }
      if (out !== undefined) return out
      return runs.length === 0 ? EMPTY : { runs, count }
    }
    const out: Array<string> = []
    try {
      for (let i = 0; i < chunk.length; i++) decoder.push(chunk[i], out)
    } catch (error) {
      if (!(error instanceof LineTooLongError)) throw error
      failure = error // after the lines completed before it, which are in `out`
    }
    return out
  }
  const next: Pull.Pull<NonEmptyReadonlyArray<string>, E | LineTooLongError> = Effect.suspend(() => {
    if (failure !== undefined) return Effect.fail(failure)
    if (ended) return Cause.done()
    return Effect.flatMap(Pull.catchDone(pull, () => endOfInput), (chunk) => {
      const before = decoder.malformed
      const lines = decode(chunk)
      const emit = isLinesText(lines)
        ? Effect.andThen(packed!(lines), next)
        : lines.length > 0
        ? Effect.succeed(lines as NonEmptyReadonlyArray<string>)
        : next
      const bad = decoder.malformed - before
      return bad > 0 && onMalformed !== undefined ? Effect.andThen(onMalformed(bad), emit) : emit
    })
  })
  return next
}
