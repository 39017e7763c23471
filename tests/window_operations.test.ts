/**
 * Window operations, ported from Spark's WindowOperationsSuite and the window cases of
 * JavaAPISuite (1-second batches, TestClock). Spark's window helpers run
 * `expected.length × (slide / batch)` batches and compare each batch as a set (`useSet = true`);
 * keyed results are compared sorted here. Plain windows keep time order, so they are compared
 * as they are.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { Effect } from "effect"
import { TestConsole } from "effect/testing"
import { BatchJobError, type DStream, StreamingContext, Testing, ValidationError, Window } from "../mod.ts"
import type { Node } from "../lib/_internal/node.ts"
import { failureOf, run, runExit, sorted } from "./_support/run.ts"

type Pair = readonly [string, number]

/** Spark's `testOperation(input, op, expected, numBatches = expected.size × slide / batch, useSet)`. */
const windowed = <A, B>(
  input: ReadonlyArray<ReadonlyArray<A> | null>,
  operation: (s: DStream.DStream<A>) => DStream.DStream<B>,
  expectedBatches: number,
  slideSeconds = 1,
) => Testing.runOperation(input, operation, { numBatches: expectedBatches * slideSeconds })

const seconds = (n: number) => `${n} seconds` as const

// ---- WindowOperationsSuite fixtures ------------------------------------------------------------

const largerSlideInput: Array<Array<Pair>> = [
  [["a", 1]],
  [["a", 2]], // 1st window from here
  [["a", 3]],
  [["a", 4]], // 2nd window from here
  [["a", 5]],
  [["a", 6]], // 3rd window from here
  [],
  [], // 4th window from here
]
const largerSlideReduceOutput: Array<Array<Pair>> = [[["a", 3]], [["a", 10]], [["a", 18]], [["a", 11]]]

const bigInput: Array<Array<Pair>> = [
  [["a", 1]],
  [["a", 1], ["b", 1]],
  [["a", 1], ["b", 1], ["c", 1]],
  [["a", 1], ["b", 1]],
  [["a", 1]],
  [],
  [["a", 1]],
  [["a", 1], ["b", 1]],
  [["a", 1], ["b", 1], ["c", 1]],
  [["a", 1], ["b", 1]],
  [["a", 1]],
  [],
]

const bigGroupByOutput: Array<Array<readonly [string, Array<number>]>> = [
  [["a", [1]]],
  [["a", [1, 1]], ["b", [1]]],
  [["a", [1, 1]], ["b", [1, 1]], ["c", [1]]],
  [["a", [1, 1]], ["b", [1, 1]], ["c", [1]]],
  [["a", [1, 1]], ["b", [1]]],
  [["a", [1]]],
  [["a", [1]]],
  [["a", [1, 1]], ["b", [1]]],
  [["a", [1, 1]], ["b", [1, 1]], ["c", [1]]],
  [["a", [1, 1]], ["b", [1, 1]], ["c", [1]]],
  [["a", [1, 1]], ["b", [1]]],
  [["a", [1]]],
]

const bigReduceOutput: Array<Array<Pair>> = [
  [["a", 1]],
  [["a", 2], ["b", 1]],
  [["a", 2], ["b", 2], ["c", 1]],
  [["a", 2], ["b", 2], ["c", 1]],
  [["a", 2], ["b", 1]],
  [["a", 1]],
  [["a", 1]],
  [["a", 2], ["b", 1]],
  [["a", 2], ["b", 2], ["c", 1]],
  [["a", 2], ["b", 2], ["c", 1]],
  [["a", 2], ["b", 1]],
  [["a", 1]],
]

// With an inverse function and no filter, keys whose value returns to 0 are not eliminated.
const bigReduceInvOutput: Array<Array<Pair>> = [
  [["a", 1]],
  [["a", 2], ["b", 1]],
  [["a", 2], ["b", 2], ["c", 1]],
  [["a", 2], ["b", 2], ["c", 1]],
  [["a", 2], ["b", 1], ["c", 0]],
  [["a", 1], ["b", 0], ["c", 0]],
  [["a", 1], ["b", 0], ["c", 0]],
  [["a", 2], ["b", 1], ["c", 0]],
  [["a", 2], ["b", 2], ["c", 1]],
  [["a", 2], ["b", 2], ["c", 1]],
  [["a", 2], ["b", 1], ["c", 0]],
  [["a", 1], ["b", 0], ["c", 0]],
]

const nums6 = [[0], [1], [2], [3], [4], [5]]
const add = (a: number, b: number) => a + b
const sub = (a: number, b: number) => a - b

describe("window (WindowOperationsSuite)", () => {
  const cases: Array<[string, Array<Array<number>>, number, number]> = [
    ["basic window", [[0], [0, 1], [1, 2], [2, 3], [3, 4], [4, 5]], 2, 1],
    ["tumbling window", [[0, 1], [2, 3], [4, 5]], 2, 2],
    ["larger window", [[0, 1], [0, 1, 2, 3], [2, 3, 4, 5], [4, 5]], 4, 2],
    ["non-overlapping window", [[1, 2], [4, 5]], 2, 3],
  ]
  for (const [name, expected, w, s] of cases) {
    it(`window() - ${name} (window ${w} s, slide ${s} s)`, async () => {
      const out = await run(windowed(nums6, (st) => st.window(seconds(w), seconds(s)), expected.length, s))
      assert.deepEqual(out, expected)
    })
  }

  it("window() without a slide slides with the parent: window(2 s) over 1-second batches is the basic window", async () => {
    const out = await run(windowed(nums6, (st) => st.window("2 seconds"), 6))
    assert.deepEqual(out, [[0], [0, 1], [1, 2], [2, 3], [3, 4], [4, 5]])
  })

  it("the pipeable form gives the same windows as the fluent one", async () => {
    const out = await run(windowed(nums6, (st) => st.pipe(Window.window("4 seconds", "2 seconds")), 4, 2))
    assert.deepEqual(out, [[0, 1], [0, 1, 2, 3], [2, 3, 4, 5], [4, 5]])
  })

  it("windows are produced only at slide-aligned times and hold the batches in (t − window, t]", async () => {
    const out = await run(
      Testing.runWithTimes((ssc) => Testing.input(ssc, nums6).window("4 seconds", "2 seconds"), { numBatches: 7 }),
    )
    assert.deepEqual(out, [[2000, [0, 1]], [4000, [0, 1, 2, 3]], [6000, [2, 3, 4, 5]]])
  })

  it("a windowed stream runs no output at non-aligned times: no print header, no foreachBatch call", async () => {
    const { lines, calls } = await run(
      Effect.gen(function* () {
        const calls: Array<number> = []
        yield* Testing.run((ssc) => {
          const w = Testing.input(ssc, nums6).window("3 seconds", "3 seconds")
          w.print()
          w.foreachBatch((_, time) => {
            calls.push(time)
          })
          return w
        }, { numBatches: 7 })
        return { lines: yield* TestConsole.logLines, calls }
      }).pipe(Effect.provide(TestConsole.layer)),
    )
    assert.deepEqual(calls, [3000, 6000])
    const text = lines.join("\n")
    assert.deepEqual(text.match(/Time: \d+ ms/g), ["Time: 3000 ms", "Time: 6000 ms"])
    assert.match(text, /Time: 3000 ms\n-{43}\n0\n1\n2\n/)
  })

  it("an empty window is an empty batch, not a missing one", async () => {
    const out = await run(windowed([[1], [], [], []], (st) => st.window("2 seconds"), 4))
    assert.deepEqual(out, [[1], [1], [], []])
  })

  it("a window skips parent times without a batch", async () => {
    const out = await run(windowed([[1], null, [3]], (st) => st.window("3 seconds"), 3))
    assert.deepEqual(out, [[1], [1], [1, 3]])
  })

  it("windows of windows compose: window(4 s, 2 s) of window(2 s, 1 s)", async () => {
    const out = await run(
      windowed(nums6, (st) => st.window("2 seconds", "1 second").window("4 seconds", "2 seconds"), 3, 2),
    )
    // at 2 s: inner windows at 1 s and 2 s; at 4 s: inner windows at 1–4 s; at 6 s: 3–6 s
    assert.deepEqual(out, [[0, 0, 1], [0, 0, 1, 1, 2, 2, 3], [1, 2, 2, 3, 3, 4, 4, 5]])
  })
})

describe("reduceByKeyAndWindow (WindowOperationsSuite)", () => {
  const cases: Array<[string, Array<Array<Pair>>, Array<Array<Pair>>, Array<Array<Pair>>, number, number]> = [
    ["basic reduction", [[["a", 1], ["a", 3]]], [[["a", 4]]], [[["a", 4]]], 2, 1],
    [
      "key already in window and new value added into window",
      [[["a", 1]], [["a", 1]]],
      [[["a", 1]], [["a", 2]]],
      [[["a", 1]], [["a", 2]]],
      2,
      1,
    ],
    [
      "new key added into window",
      [[["a", 1]], [["a", 1], ["b", 1]]],
      [[["a", 1]], [["a", 2], ["b", 1]]],
      [[["a", 1]], [["a", 2], ["b", 1]]],
      2,
      1,
    ],
    [
      "key removed from window",
      [[["a", 1]], [["a", 1]], [], []],
      [[["a", 1]], [["a", 2]], [["a", 1]], []],
      [[["a", 1]], [["a", 2]], [["a", 1]], [["a", 0]]],
      2,
      1,
    ],
    ["larger slide time", largerSlideInput, largerSlideReduceOutput, largerSlideReduceOutput, 4, 2],
    ["big test", bigInput, bigReduceOutput, bigReduceInvOutput, 2, 1],
  ]
  for (const [name, input, naive, inverse, w, s] of cases) {
    it(`reduceByKeyAndWindow() - ${name}`, async () => {
      const out = await run(
        windowed(input, (st) => st.reduceByKeyAndWindow(add, seconds(w), seconds(s)), naive.length, s),
      )
      assert.deepEqual(sorted(out), naive)
    })
    it(`reduceByKeyAndWindow() with inverse function - ${name}`, async () => {
      const out = await run(
        windowed(input, (st) => st.reduceByKeyAndWindow(add, sub, seconds(w), seconds(s)), inverse.length, s),
      )
      assert.deepEqual(sorted(out), inverse)
    })
  }

  it("reduceByKeyAndWindow() with inverse and filter functions - big test equals the naive output", async () => {
    const out = await run(
      windowed(
        bigInput,
        (st) => st.reduceByKeyAndWindow(add, sub, "2 seconds", "1 second", { filter: ([, n]) => n !== 0 }),
        12,
      ),
    )
    assert.deepEqual(sorted(out), bigReduceOutput)
  })

  it("the seed programs agree: window(30 s, 10 s).reduceByKey and reduceByKeyAndWindow(+, 30 s, 10 s), plain and incremental", async () => {
    const vocabulary = ["spark", "effect", "deno", "bun", "window", "slide"]
    let seed = 7
    const next = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648)
    const lines = Array.from(
      { length: 70 },
      () => Array.from({ length: next() % 4 }, () => vocabulary[next() % vocabulary.length]).join(" "),
    )
    const input = lines.map((l) => [l])
    const words = (st: DStream.DStream<string>) =>
      st.flatMap((l) => l.split(" ").filter((w) => w.length > 0)).mapToPair((w) => [w, 1])
    const opts = { numBatches: 70 }
    const viaWindow = await run(
      Testing.runOperation(input, (st) => words(st).window("30 seconds", "10 seconds").reduceByKey(add), opts),
    )
    const plain = await run(
      Testing.runOperation(input, (st) => words(st).reduceByKeyAndWindow(add, "30 seconds", "10 seconds"), opts),
    )
    const incremental = await run(
      Testing.runOperation(
        input,
        (st) => words(st).reduceByKeyAndWindow(add, sub, "30 seconds", "10 seconds", { filter: ([, n]) => n > 0 }),
        opts,
      ),
    )
    // Reference: count the words of the batches in (t − 30 s, t] directly.
    const expected = [10, 20, 30, 40, 50, 60, 70].map((t) => {
      const counts = new Map<string, number>()
      for (let b = Math.max(1, t - 29); b <= t; b++) {
        for (const w of lines[b - 1].split(" ")) if (w.length > 0) counts.set(w, (counts.get(w) ?? 0) + 1)
      }
      return [...counts]
    })
    assert.equal(viaWindow.length, 7)
    assert.deepEqual(sorted(viaWindow), sorted(expected))
    assert.deepEqual(sorted(plain), sorted(expected))
    assert.deepEqual(sorted(incremental), sorted(expected))
  })

  it("with an inverse function, a key seen only in the gap between windows (window < slide) is in no window", async () => {
    const input: Array<Array<Pair>> = [
      [["a", 1]],
      [["a", 2]],
      [["a", 3]],
      [["a", 4], ["b", 1]],
      [["a", 5]],
      [["a", 6]],
      [],
      [],
      [["b", 9]],
    ]
    const naive = await run(windowed(input, (st) => st.reduceByKeyAndWindow(add, "2 seconds", "3 seconds"), 3, 3))
    const inverse = await run(
      windowed(input, (st) => st.reduceByKeyAndWindow(add, sub, "2 seconds", "3 seconds"), 3, 3),
    )
    assert.deepEqual(sorted(naive), [[["a", 5]], [["a", 11]], [["b", 9]]])
    assert.deepEqual(sorted(inverse), [[["a", 5]], [["a", 11]], [["a", 0], ["b", 9]]])
  })

  it("a filter that drops a key still holding data in the window fails the batch with a clear error", async () => {
    const exit = await runExit(
      windowed(
        [[["a", 1]], [], []] as Array<Array<Pair>>,
        (st) => st.reduceByKeyAndWindow(add, sub, "2 seconds", "1 second", { filter: ([, n]) => n > 1 }),
        3,
      ),
    )
    const error = failureOf(exit)
    assert.ok(error instanceof BatchJobError, String(error))
    assert.equal(error.batchTime, 3000)
    assert.match(error.message, /key "a" left the window, but the previous window has no value for it/)
  })

  it("when the previous window's value is gone (a rebuilt graph), the window is reduced from its batches once", async () => {
    const filter = { filter: ([, n]: Pair) => n !== 0 }
    let mapped = 0
    const out = await run(Testing.run((ssc) => {
      const pairs = Testing.input(ssc, bigInput)
      const counted = pairs.map((kv) => (mapped++, kv))
      const incremental = counted.reduceByKeyAndWindow(add, sub, "2 seconds", "1 second", filter)
      // Registered first, so it runs before the window of the same batch is computed.
      pairs.foreachBatch((_, time) => {
        if (time !== 6000) return
        const node = incremental.node as unknown as { generated: Map<number, unknown>; last: unknown }
        node.generated.clear()
        node.last = undefined
      })
      return incremental
    }, { numBatches: 12 }))
    assert.deepEqual(sorted(out), bigReduceOutput)
    // No recursion back to zero time: every record was mapped once, no old batch recomputed.
    assert.equal(mapped, bigInput.flat().length)
  })

  it("the incremental form reduces only the batches entering and leaving the window, not the whole window", async () => {
    let plainCalls = 0
    let incrementalCalls = 0
    const input = Array.from({ length: 40 }, () => [["k", 1], ["k", 1]] as Array<Pair>)
    const plain = await run(
      windowed(input, (st) => st.reduceByKeyAndWindow((a, b) => (plainCalls++, a + b), "20 seconds"), 40),
    )
    const incremental = await run(
      windowed(input, (st) =>
        st.reduceByKeyAndWindow(
          (a, b) => (incrementalCalls++, a + b),
          (a, b) => (incrementalCalls++, a - b),
          "20 seconds",
        ), 40),
    )
    assert.deepEqual(incremental, plain)
    assert.deepEqual(incremental.at(-1), [["k", 40]])
    // Per batch: 1 call reducing the batch itself, 1 adding it to the window, 1 subtracting
    // the batch that left. The plain form re-reduces every batch in the window.
    assert.ok(incrementalCalls <= 3 * 40, `incremental: ${incrementalCalls} calls`)
    assert.ok(plainCalls > 20 * 20, `plain: ${plainCalls} calls`)
  })
})

describe("other windowed operators (WindowOperationsSuite)", () => {
  it("groupByKeyAndWindow() collects each key's values over the window", async () => {
    const out = await run(windowed(bigInput, (st) => st.groupByKeyAndWindow("2 seconds", "1 second"), 12))
    assert.deepEqual(sorted(out), bigGroupByOutput)
  })

  it("groupByKeyAndWindow() keeps values in time order and leaves the remembered batches untouched", async () => {
    const input: Array<Array<Pair>> = [[["a", 1], ["a", 2]], [["a", 3]], [["a", 4]]]
    const out = await run(windowed(input, (st) => st.groupByKeyAndWindow("3 seconds"), 4))
    assert.deepEqual(out, [[["a", [1, 2]]], [["a", [1, 2, 3]]], [["a", [1, 2, 3, 4]]], [["a", [3, 4]]]])
  })

  it("countByWindow() counts the elements of each window", async () => {
    const out = await run(
      windowed([[1], [1], [1, 2], [0], [], []], (st) => st.countByWindow("2 seconds", "1 second"), 6),
    )
    assert.deepEqual(out, [[1], [2], [3], [3], [1], [0]])
  })

  it("countByWindow() emits nothing before the first element ever arrives, then 0 for empty windows", async () => {
    const out = await run(windowed([[], [], [7], [], [], []], (st) => st.countByWindow("2 seconds"), 6))
    assert.deepEqual(out, [[], [], [1], [1], [0], [0]])
  })

  it("countByValueAndWindow() counts each value over the window", async () => {
    const out = await run(
      windowed([["a"], ["b", "b"], ["a", "b"]], (st) => st.countByValueAndWindow("2 seconds", "1 second"), 3),
    )
    assert.deepEqual(sorted(out), [[["a", 1]], [["a", 1], ["b", 2]], [["a", 1], ["b", 3]]])
  })

  it("countByValueAndWindow() drops values whose count fell to 0", async () => {
    const out = await run(windowed([["a"], ["b"], [], []], (st) => st.countByValueAndWindow("2 seconds"), 4))
    assert.deepEqual(sorted(out), [[["a", 1]], [["a", 1], ["b", 1]], [["b", 1]], []])
  })

  it("reduceByWindow() of an empty window is an empty batch; the inverse form gives the inverse's zero", async () => {
    const input = [[1, 2], [], [], []]
    const plain = await run(windowed(input, (st) => st.reduceByWindow(add, "2 seconds"), 4))
    const inverse = await run(windowed(input, (st) => st.reduceByWindow(add, sub, "2 seconds"), 4))
    assert.deepEqual(plain, [[3], [3], [], []])
    assert.deepEqual(inverse, [[3], [3], [0], [0]])
  })
})

describe("window operations (JavaAPISuite)", () => {
  const stringIntKVStream: Array<Array<Pair>> = [
    [["california", 1], ["california", 3], ["new york", 4], ["new york", 1]],
    [["california", 5], ["california", 5], ["new york", 3], ["new york", 1]],
  ]
  const setOf = <A>(xs: ReadonlyArray<A>) => sorted([xs])[0]

  it("testWindow", async () => {
    const input = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    await run(Testing.testOperation(
      input,
      (st) => st.window("2 seconds"),
      [[1, 2, 3], [1, 2, 3, 4, 5, 6], [4, 5, 6, 7, 8, 9], [7, 8, 9]],
      { useSet: true },
    ))
  })

  it("testWindowWithSlideDuration", async () => {
    const input = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12], [13, 14, 15], [16, 17, 18]]
    const out = await run(Testing.runOperation(input, (st) => st.window("4 seconds", "2 seconds"), { numBatches: 8 }))
    assert.deepEqual(out, [
      [1, 2, 3, 4, 5, 6],
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
      [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18],
      [13, 14, 15, 16, 17, 18],
    ])
  })

  for (const withInverse of [true, false]) {
    it(`testReduceByWindow${withInverse ? "WithInverse" : "WithoutInverse"}`, async () => {
      const input = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
      await run(Testing.testOperation(
        input,
        (st) => withInverse ? st.reduceByWindow(add, sub, 2000, 1000) : st.reduceByWindow(add, 2000, 1000),
        [[6], [21], [39], [24]],
      ))
    })
  }

  it("testGroupByKeyAndWindow", async () => {
    const out = await run(
      Testing.runOperation(stringIntKVStream, (st) => st.groupByKeyAndWindow(2000, 1000), { numBatches: 3 }),
    )
    const asSets = out.map((b) => sorted(b.map(([k, vs]) => [k, setOf(vs)] as const)))
    assert.deepEqual(asSets, [
      [["california", [1, 3]], ["new york", [1, 4]]],
      [["california", [1, 3, 5, 5]], ["new york", [1, 1, 3, 4]]],
      [["california", [5, 5]], ["new york", [1, 3]]],
    ])
  })

  it("testReduceByKeyAndWindow", async () => {
    await run(Testing.testOperation(
      stringIntKVStream,
      (st) => st.reduceByKeyAndWindow(add, 2000, 1000),
      [[["california", 4], ["new york", 5]], [["california", 14], ["new york", 9]], [["california", 10], [
        "new york",
        4,
      ]]],
      { useSet: true },
    ))
  })

  it("testReduceByKeyAndWindowWithInverse", async () => {
    await run(Testing.testOperation(
      stringIntKVStream,
      (st) => st.reduceByKeyAndWindow(add, sub, 2000, 1000),
      [[["california", 4], ["new york", 5]], [["california", 14], ["new york", 9]], [["california", 10], [
        "new york",
        4,
      ]]],
      { useSet: true },
    ))
  })

  it("testCountByValueAndWindow", async () => {
    const input = [["hello", "world"], ["hello", "moon"], ["hello"]]
    const out = await run(Testing.runOperation(input, (st) => st.countByValueAndWindow(2000, 1000), { numBatches: 3 }))
    assert.deepEqual(sorted(out), [
      [["hello", 1], ["world", 1]],
      [["hello", 2], ["moon", 1], ["world", 1]],
      [["hello", 2], ["moon", 1]],
    ])
  })
})

describe("window validation", () => {
  const withInput = <A>(f: (s: DStream.DStream<number>) => A): Promise<A> =>
    run(Effect.gen(function* () {
      // Never started: the operators are only defined, so nothing needs stopping.
      const ssc = yield* StreamingContext.make({ batchInterval: "2 seconds" })
      return f(Testing.input(ssc, [[1]]))
    }))

  const throwsNaming = (f: () => unknown, pattern: RegExp) =>
    assert.throws(f, (e: unknown) => e instanceof ValidationError && pattern.test(e.message))

  it("a window that is not a multiple of the parent's slide fails when the operator is called, naming both durations", async () => {
    await withInput((s) => {
      const message =
        /Cannot create WindowedDStream: the window duration \(3000 ms\) is not a multiple of the parent DStream's slide duration \(2000 ms\)/
      throwsNaming(() => s.window("3 seconds"), message)
      throwsNaming(() => s.mapToPair((n) => [n, n]).reduceByKeyAndWindow(add, "3 seconds"), message)
      throwsNaming(() => s.mapToPair((n) => [n, n]).groupByKeyAndWindow("3 seconds"), message)
      throwsNaming(() => s.reduceByWindow(add, "3 seconds"), message)
    })
  })

  it("a slide that is not a multiple of the parent's slide fails when the operator is called, naming both durations", async () => {
    await withInput((s) => {
      const message =
        /Cannot create WindowedDStream: the slide duration \(3000 ms\) is not a multiple of the parent DStream's slide duration \(2000 ms\)/
      throwsNaming(() => s.window("4 seconds", "3 seconds"), message)
      throwsNaming(
        () => s.window("4 seconds", "2 seconds").window("8 seconds", "2 seconds").window("8 seconds", 3000),
        message,
      )
    })
  })

  it("the incremental forms name ReducedWindowedDStream", async () => {
    await withInput((s) => {
      const w =
        /ReducedWindowedDStream: the window duration \(3000 ms\) is not a multiple of the parent DStream's slide duration \(2000 ms\)/
      const sl =
        /ReducedWindowedDStream: the slide duration \(1000 ms\) is not a multiple of the parent DStream's slide duration \(2000 ms\)/
      throwsNaming(() => s.mapToPair((n) => [n, n]).reduceByKeyAndWindow(add, sub, "3 seconds"), w)
      throwsNaming(() => s.mapToPair((n) => [n, n]).reduceByKeyAndWindow(add, sub, "4 seconds", "1 second"), sl)
      throwsNaming(() => s.countByWindow("3 seconds"), w)
      throwsNaming(() => s.countByValueAndWindow("4 seconds", "1 second"), sl)
      throwsNaming(() => s.reduceByWindow(add, sub, "3 seconds"), w)
    })
  })

  it("a window relative to a windowed parent checks against the parent's slide, and window < slide is allowed", async () => {
    await withInput((s) => {
      const w = s.window("8 seconds", "4 seconds")
      throwsNaming(
        () => w.window("6 seconds"),
        /window duration \(6000 ms\) is not a multiple of the parent DStream's slide duration \(4000 ms\)/,
      )
      assert.equal(w.window("8 seconds").node.slideMillis, 4000)
      assert.ok(s.window("2 seconds", "6 seconds"))
    })
  })

  it("invalid durations are rejected", async () => {
    await withInput((s) => {
      throwsNaming(() => s.window(0), /Window duration must be a positive whole number of milliseconds/)
      throwsNaming(() => s.window("2 seconds", -2000), /Slide duration must be a positive whole number of milliseconds/)
    })
  })
})

describe("remember durations and memory", () => {
  it("rdd cleanup - map and window: remember 3 s, map → window(2 s, 1 s) → window(4 s, 2 s) remember 3 s, 7 s, 9 s", async () => {
    const input = Array.from({ length: 10 }, (_, x) => [x, x + 1])
    let mapped!: Node<unknown>
    let window1!: Node<unknown>
    let window2!: Node<unknown>
    const out = await run(Testing.run((ssc) => {
      ssc.remember("3 seconds")
      const m = Testing.input(ssc, input).map((x) => [x % 10, 1] as const)
      const w1 = m.window("2 seconds", "1 second")
      const w2 = w1.window("4 seconds", "2 seconds")
      mapped = m.node
      window1 = w1.node
      window2 = w2.node
      return w2
    }, { numBatches: 10 }))
    assert.equal(out.length, 5)
    assert.equal(window2.rememberMillis, 3000)
    assert.equal(window1.rememberMillis, 3000 + 4000)
    assert.equal(mapped.rememberMillis, 3000 + 4000 + 2000)
    // After batch 10: window2 keeps (7, 10], window1 (3, 10], the mapped stream (1, 10].
    const times = (n: Node<unknown>) => [...n.generated.keys()].sort((a, b) => a - b)
    assert.deepEqual(times(window2), [8000, 10000])
    assert.deepEqual(times(window1), [4000, 5000, 6000, 7000, 8000, 9000, 10000])
    assert.deepEqual(times(mapped), [2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000])
  })

  it("old batches are released: every node keeps only what its windows need, however long the run", async () => {
    const numBatches = 60
    const input = Array.from({ length: numBatches }, (_, i) => [`k${i % 7}`, `k${i % 3}`])
    const nodes: Record<string, Node<unknown>> = {}
    const peaks: Record<string, number> = {}
    const track = () => {
      for (const [name, n] of Object.entries(nodes)) peaks[name] = Math.max(peaks[name] ?? 0, n.generated.size)
    }
    const out = await run(Testing.run((ssc) => {
      const words = Testing.input(ssc, input)
      const pairs = words.map((w) => [w, 1] as const)
      const windowed = pairs.window("5 seconds", "1 second")
      const incremental = pairs.reduceByKeyAndWindow(add, sub, "10 seconds", "2 seconds")
      nodes.input = words.node
      nodes.pairs = pairs.node
      nodes.window = windowed.node
      nodes.reduced = incremental.node.parents[0]
      nodes.incremental = incremental.node
      windowed.foreachBatch(track)
      return incremental
    }, { numBatches }))
    assert.equal(out.length, numBatches / 2)
    track()
    // pairs: window 5 s + the window's own 1 s slide → the last 6 batches. reduced (the
    // per-batch reduceByKey, fused with the map so it reads the input): 10 s window + 2 s
    // slide → 12 batches, and like Spark its ancestors (the input) remember as long.
    // incremental: its slide (2 s) → the last window only.
    assert.equal(nodes.pairs.rememberMillis, 6000)
    assert.equal(nodes.reduced.rememberMillis, 12000)
    assert.equal(nodes.input.rememberMillis, 12000)
    assert.equal(nodes.incremental.rememberMillis, 2000)
    assert.ok(peaks.pairs <= 7, `pairs stream peaked at ${peaks.pairs} batches`)
    assert.ok(peaks.reduced <= 13, `reduced stream peaked at ${peaks.reduced} batches`)
    assert.ok(peaks.incremental <= 2, `incremental window peaked at ${peaks.incremental} batches`)
    assert.ok(peaks.window <= 2, `window peaked at ${peaks.window} batches`)
    assert.ok(peaks.input <= 13, `input peaked at ${peaks.input} batches`)
    assert.equal(nodes.pairs.generated.size, 6)
    assert.equal(nodes.reduced.generated.size, 12)
  })
})
