import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { Effect, Stream } from "effect"
import { LineTooLongError } from "../lib/Errors.ts"
import { linesOf, type LinesText, makeLineDecoder, splitUtf8Lines } from "../receivers/_lines.ts"

const utf8 = (text: string) => new TextEncoder().encode(text)

/** Pushes every chunk, then ends; returns all lines. */
const decodeAll = (chunks: ReadonlyArray<Uint8Array | string>, maxLineBytes?: number): Array<string> => {
  const decoder = makeLineDecoder({ source: "test", maxLineBytes })
  const out: Array<string> = []
  for (const chunk of chunks) decoder.push(typeof chunk === "string" ? utf8(chunk) : chunk, out)
  decoder.end(out)
  return out
}

/** Every way of cutting `bytes` in two. */
const allSplits = (bytes: Uint8Array): Array<[Uint8Array, Uint8Array]> => {
  const splits: Array<[Uint8Array, Uint8Array]> = []
  for (let i = 0; i <= bytes.length; i++) splits.push([bytes.slice(0, i), bytes.slice(i)])
  return splits
}

describe("line decoder", () => {
  it("splits on \\n, \\r\\n and \\r, dropping the terminators", () => {
    assert.deepEqual(decodeAll(["a\nb\r\nc\rd\n"]), ["a", "b", "c", "d"])
    assert.deepEqual(decodeAll(["one\r\ntwo\r\n"]), ["one", "two"])
    assert.deepEqual(decodeAll(["x\ry\rz"]), ["x", "y", "z"])
  })

  it("emits empty lines between terminators", () => {
    assert.deepEqual(decodeAll(["\n\na\n\r\n\r\rb\n"]), ["", "", "a", "", "", "", "b"])
    assert.deepEqual(decodeAll(["\r\n"]), [""])
    assert.deepEqual(decodeAll(["\n\r"]), ["", ""])
  })

  it("treats \\r at the end of one chunk and \\n at the start of the next as one terminator", () => {
    assert.deepEqual(decodeAll(["a\r", "\nb\n"]), ["a", "b"])
    assert.deepEqual(decodeAll(["a\r", "\n", "\n"]), ["a", ""])
    assert.deepEqual(decodeAll(["a\r", "", "\nb"]), ["a", "b"])
    assert.deepEqual(decodeAll(["a\r", "b\r", "\r", "\n"]), ["a", "b", ""])
  })

  it("gives the same lines however the input is cut", () => {
    const text = "αβγ\r\n\r\nline two 🎉\rthird\n\nlast €"
    const expected = ["αβγ", "", "line two 🎉", "third", "", "last €"]
    const bytes = utf8(text)
    for (const [a, b] of allSplits(bytes)) assert.deepEqual(decodeAll([a, b]), expected)
    assert.deepEqual(decodeAll(Array.from(bytes, (byte) => Uint8Array.of(byte))), expected)
  })

  it("decodes multi-byte characters split across chunks", () => {
    const euro = utf8("€") // 3 bytes
    const emoji = utf8("😀") // 4 bytes
    assert.deepEqual(decodeAll([euro.slice(0, 1), euro.slice(1, 2), euro.slice(2), "\n"]), ["€"])
    assert.deepEqual(decodeAll([utf8("x"), emoji.slice(0, 3), Uint8Array.of(emoji[3], 10)]), ["x😀"])
  })

  it("emits the final unterminated line at the end, and nothing for an empty one", () => {
    const decoder = makeLineDecoder({ source: "test" })
    assert.deepEqual(decoder.push(utf8("a\nb")), ["a"])
    assert.equal(decoder.pendingBytes, 1)
    assert.deepEqual(decoder.end(), ["b"])
    assert.deepEqual(decodeAll(["a\n"]), ["a"])
    assert.deepEqual(decodeAll(["a\r"]), ["a"])
    assert.deepEqual(decodeAll([]), [])
  })

  it("returns completed lines from push without an `into` array", () => {
    const decoder = makeLineDecoder({ source: "test" })
    assert.deepEqual(decoder.push(utf8("a\nb\nc")), ["a", "b"])
    assert.deepEqual(decoder.push(utf8("d")), [])
    assert.deepEqual(decoder.push(utf8("\n")), ["cd"])
  })

  it("replaces invalid UTF-8 with U+FFFD without failing", () => {
    assert.deepEqual(decodeAll([Uint8Array.of(0x61, 0xff, 0x62, 10)]), ["a\uFFFDb"])
    // a truncated 3-byte sequence before the terminator, a lone continuation byte, overlong "/"
    assert.deepEqual(decodeAll([Uint8Array.of(0xe2, 0x82, 10, 0x80, 10, 0xc0, 0xaf, 10)]), [
      "\uFFFD",
      "\uFFFD",
      "\uFFFD\uFFFD",
    ])
    // a truncated sequence at the end of input
    assert.deepEqual(decodeAll([Uint8Array.of(0x61, 0xf0, 0x9f)]), ["a\uFFFD"])
    // binary garbage decodes to lines with replacement characters
    const garbage = new Uint8Array(4096)
    for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 151 + 7) % 256
    const lines = decodeAll([garbage.subarray(0, 1000), garbage.subarray(1000)])
    assert.ok(lines.length > 1)
    assert.ok(lines.join("").includes("\uFFFD"))
  })

  it("keeps a byte-order mark, like Java's readLine", () => {
    assert.deepEqual(decodeAll([Uint8Array.of(0xef, 0xbb, 0xbf, 0x61, 10, 0xef, 0xbb, 0xbf, 10)]), [
      "\uFEFFa",
      "\uFEFF",
    ])
  })

  it("accepts a line of exactly maxLineBytes and rejects one byte more", () => {
    assert.deepEqual(decodeAll(["abcd\nef"], 4), ["abcd", "ef"])
    assert.deepEqual(decodeAll(["ab", "cd", "\r\n"], 4), ["abcd"])
    assert.throws(() => decodeAll(["abcde\n"], 4), LineTooLongError)
    assert.throws(() => decodeAll(["abc", "de"], 4), LineTooLongError)
  })

  it("rejects an over-long line and keeps the lines completed before it", () => {
    const decoder = makeLineDecoder({ source: "socket h:1", maxLineBytes: 9 })
    const out: Array<string> = []
    assert.deepEqual(decoder.push(utf8("ok\n"), out), ["ok"])
    const error = (() => {
      try {
        decoder.push(utf8("fine\nalso fine\nthis one is too long\nnever\n"), out) // "also fine": 9 bytes
      } catch (error) {
        return error
      }
      assert.fail("push did not throw")
    })()
    assert.ok(error instanceof LineTooLongError)
    assert.equal(error.limit, 9)
    assert.equal(error.source, "socket h:1")
    assert.match(error.message, /exceeds the limit of 9 bytes/)
    assert.deepEqual(out, ["ok", "fine", "also fine"])
    assert.ok(decoder.failure instanceof LineTooLongError)
    assert.throws(() => decoder.push(utf8("x\n")), LineTooLongError)
    assert.throws(() => decoder.end(), LineTooLongError)
  })

  it("without `into`, returns the lines before an over-long one and fails the next call", () => {
    const decoder = makeLineDecoder({ source: "test", maxLineBytes: 4 })
    assert.deepEqual(decoder.push(utf8("ab\ncd\nefghij")), ["ab", "cd"])
    assert.ok(decoder.failure instanceof LineTooLongError)
    assert.throws(() => decoder.push(utf8("\n")), LineTooLongError)
    // with nothing to return, push throws at once
    const other = makeLineDecoder({ source: "test", maxLineBytes: 4 })
    assert.throws(() => other.push(utf8("abcdefgh")), LineTooLongError)
  })

  it("rejects a limit that is not a positive integer at once", () => {
    for (const maxLineBytes of [0, -1, 1.5, Number.NaN]) {
      assert.throws(() => makeLineDecoder({ source: "test", maxLineBytes }), RangeError)
      assert.throws(() => splitUtf8Lines({ source: "test", maxLineBytes }), RangeError)
    }
  })

  it("counts the limit in bytes, not characters", () => {
    assert.deepEqual(decodeAll(["€€\n"], 6), ["€€"])
    assert.throws(() => decodeAll(["€€€\n"], 6), LineTooLongError)
    assert.throws(() => decodeAll(["€", "€", "€"], 6), LineTooLongError)
  })

  it("keeps memory bounded: 10 MiB without a newline fails at the 1 MiB limit", () => {
    const decoder = makeLineDecoder({ source: "test" }) // default limit 1 MiB
    const chunk = new Uint8Array(64 * 1024).fill(0x61)
    let pushed = 0
    let failedAt = -1
    for (let i = 0; i < 160; i++) { // 160 × 64 KiB = 10 MiB
      try {
        assert.deepEqual(decoder.push(chunk), [])
        pushed += chunk.length
        assert.ok(decoder.pendingBytes <= 1_048_576)
      } catch (error) {
        assert.ok(error instanceof LineTooLongError)
        assert.equal(error.limit, 1_048_576)
        failedAt = pushed + chunk.length
        break
      }
    }
    assert.equal(failedAt, 1_048_576 + 64 * 1024)
    assert.equal(decoder.pendingBytes, 0)
    // one 10 MiB chunk fails at once as well, without being copied
    const big = makeLineDecoder({ source: "test" })
    assert.throws(() => big.push(new Uint8Array(10 * 1_048_576).fill(0x62)), LineTooLongError)
    assert.equal(big.pendingBytes, 0)
  })

  it("splits thousands of CRLF lines cut at odd offsets", () => {
    const lines = Array.from({ length: 5000 }, (_, i) => `line ${i} ${"x".repeat(i % 97)}`)
    const bytes = utf8(lines.join("\r\n") + "\r\n")
    const chunks: Array<Uint8Array> = []
    for (let i = 0; i < bytes.length; i += 1013) chunks.push(bytes.subarray(i, i + 1013))
    assert.deepEqual(decodeAll(chunks), lines)
  })
})

describe("line decoder: lines kept as bytes (pushText)", () => {
  /** Pushes every chunk with pushText, expanding texts with linesOf; returns all lines and how many came as text. */
  const decodeAllText = (chunks: ReadonlyArray<Uint8Array>): [Array<string>, number] => {
    const decoder = makeLineDecoder({ source: "test" })
    const out: Array<string> = []
    let texts = 0
    for (const chunk of chunks) {
      const lines = decoder.pushText(chunk)
      if (Array.isArray(lines)) out.push(...lines)
      else {
        const text = lines as LinesText
        texts++
        const expanded = linesOf(text.runs)
        assert.equal(expanded.length, text.count, "count matches the lines")
        out.push(...expanded)
      }
    }
    decoder.end(out)
    return [out, texts]
  }

  it("gives the same lines as push however the input is cut, multi-byte characters included", () => {
    const bytes = utf8("añb\n€ x\n\nz😀\n\nlast")
    const expected = ["añb", "€ x", "", "z😀", "", "last"]
    for (const [a, b] of allSplits(bytes)) {
      const [lines, texts] = decodeAllText([a, b])
      assert.deepEqual(lines, expected)
      assert.ok(texts >= 1)
    }
  })

  it("returns lines holding a \\r terminator as an array, as push does", () => {
    const decoder = makeLineDecoder({ source: "test" })
    assert.deepEqual(decoder.pushText(utf8("a\r\nb\n")), ["a", "b"])
    const plain = decoder.pushText(utf8("c\nd\n"))
    assert.ok(!Array.isArray(plain))
    assert.deepEqual(linesOf((plain as LinesText).runs), ["c", "d"])
  })

  it("with a line carried over from the previous chunk, still returns an array for a \\r or an invalid byte after it", () => {
    const decoder = makeLineDecoder({ source: "test" })
    assert.deepEqual(decoder.pushText(utf8("ab")), [])
    // the carried line "abc" is plain; the lines after it hold a \r\n
    assert.deepEqual(decoder.pushText(utf8("c\nd\r\ne\nf")), ["abc", "d", "e"])
    // the carried line "fg" is plain; an invalid byte after it is counted once, and replaced
    const invalid = new Uint8Array([0x67, 0x0a, 0x68, 0xff, 0x69, 0x0a])
    assert.deepEqual(decoder.pushText(invalid), ["fg", "h\uFFFDi"])
    assert.equal(decoder.malformed, 1)
    // an encoded U+FFFD is not a malformed sequence, whichever way it comes back
    const encoded = decoder.pushText(utf8("x\uFFFDy\n"))
    const lines = Array.isArray(encoded) ? encoded : linesOf((encoded as LinesText).runs)
    assert.deepEqual(lines, ["x\uFFFDy"])
    assert.equal(decoder.malformed, 1)
  })

  it("keeps the bytes it returns when its own buffer is reused for the next line", () => {
    const decoder = makeLineDecoder({ source: "test" })
    assert.deepEqual(decoder.pushText(utf8("partial")), [])
    const first = decoder.pushText(utf8("-one\nnext-partial"))
    const second = decoder.pushText(utf8("-two\n"))
    assert.deepEqual(linesOf((first as LinesText).runs), ["partial-one"])
    assert.deepEqual(linesOf((second as LinesText).runs), ["next-partial-two"])
  })
})

describe("splitUtf8Lines", () => {
  const run = <E>(stream: Stream.Stream<string, E>) => Effect.runPromise(Effect.result(Stream.runCollect(stream)))

  it("turns a byte stream into lines, flushing the final one", async () => {
    const bytes = Stream.make(utf8("a\r"), utf8("\nb\nc"))
    const result = await run(bytes.pipe(splitUtf8Lines({ source: "test" })))
    assert.equal(result._tag, "Success")
    if (result._tag === "Success") assert.deepEqual(Array.from(result.success), ["a", "b", "c"])
  })

  it("emits the lines before an over-long one, then fails with LineTooLongError", async () => {
    const collected: Array<string> = []
    const bytes = Stream.make(utf8("one\ntwo\n"), utf8("three\n0123456789\nlater\n"))
    const result = await Effect.runPromise(Effect.result(
      bytes.pipe(
        splitUtf8Lines({ source: "test", maxLineBytes: 5 }),
        Stream.runForEachArray((lines) => Effect.sync(() => collected.push(...lines))),
      ),
    ))
    assert.equal(result._tag, "Failure")
    if (result._tag === "Failure") assert.ok(result.failure instanceof LineTooLongError)
    assert.deepEqual(collected, ["one", "two", "three"])
  })

  /** Runs `chunks` through splitUtf8Lines with `packed`; returns every line in order, and how many came packed. */
  const runPacked = async (stream: Stream.Stream<Uint8Array>, maxLineBytes?: number) => {
    const lines: Array<string> = []
    let packed = 0
    const malformed: Array<number> = []
    const result = await Effect.runPromise(Effect.result(
      stream.pipe(
        splitUtf8Lines({
          source: "test",
          maxLineBytes,
          onMalformed: (n) => Effect.sync(() => void malformed.push(n)),
          packed: (text) =>
            Effect.sync(() => {
              packed += text.count
              lines.push(...linesOf(text.runs))
            }),
        }),
        Stream.runForEachArray((ls) => Effect.sync(() => void lines.push(...ls))),
      ),
    ))
    return { result, lines, packed, malformed }
  }

  it("with `packed`, hands over lines as bytes in order, one chunk or several per pull", async () => {
    const chunks = ["a\nb\n", "c\r\nd\n", "\u00e9", "f\ng"].map(utf8)
    const expected = ["a", "b", "c", "d", "\u00e9f", "g"]
    // one pull per chunk: a, b and éf packed; c, d (\r\n) and the final g emitted
    const perChunk = await runPacked(Stream.fromIterable(chunks).pipe(Stream.rechunk(1)))
    assert.equal(perChunk.result._tag, "Success")
    assert.deepEqual(perChunk.lines, expected)
    assert.equal(perChunk.packed, 3)
    // one pull with every chunk (Stream.make): a chunk with \r\n makes the whole pull an array
    const together = await runPacked(Stream.make(...chunks))
    assert.deepEqual(together.lines, expected)
    assert.equal(together.packed, 0)
    // one pull of chunks without \r: one packed hand-over
    const plain = await runPacked(Stream.make(utf8("a\nb"), utf8("\nc\n"), utf8("d")))
    assert.deepEqual(plain.lines, ["a", "b", "c", "d"])
    assert.equal(plain.packed, 3)
  })

  it("with `packed`, still reports invalid UTF-8 when it arrives", async () => {
    const { lines, malformed } = await runPacked(
      Stream.fromIterable([new Uint8Array([0x61, 0xff, 0x0a]), utf8("b\n")]).pipe(Stream.rechunk(1)),
    )
    assert.deepEqual(lines, ["a\uFFFD", "b"])
    assert.deepEqual(malformed, [1])
  })

  it("with `packed`, keeps the lines before an over-long one, then fails with LineTooLongError", async () => {
    for (
      const stream of [
        Stream.make(utf8("one\ntwo\n"), utf8("three\n0123456789\nlater\n")),
        Stream.fromIterable([utf8("one\ntwo\n"), utf8("three\n0123456789\nlater\n")]).pipe(Stream.rechunk(1)),
      ]
    ) {
      const { result, lines } = await runPacked(stream, 5)
      assert.equal(result._tag, "Failure")
      if (result._tag === "Failure") assert.ok(result.failure instanceof LineTooLongError)
      assert.deepEqual(lines, ["one", "two", "three"])
    }
  })
})
