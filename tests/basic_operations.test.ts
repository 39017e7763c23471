/**
 * Golden-batch tests for the per-batch and keyed operators, ported from Spark's
 * BasicOperationsSuite and JavaAPISuite (Spark's `useSet = true` cases compare sorted batches,
 * since keyed results come in first-appearance order here, not hash-partition order).
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { Effect, Option } from "effect"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { BatchJobError, DStream, Testing } from "../mod.ts"
import { failureOf, run, runExit, sorted } from "./_support/run.ts"

const range = (from: number, to: number): Array<number> => Array.from({ length: to - from + 1 }, (_, i) => from + i)
const nums = [range(1, 4), range(5, 8), range(9, 12)]

describe("per-batch operators (BasicOperationsSuite)", () => {
  it("map() applies the function to every element of every batch", async () => {
    const out = await run(Testing.runOperation(nums, (s) => s.map((x) => String(x))))
    assert.deepEqual(out, nums.map((b) => b.map(String)))
  })

  it("flatMap() flattens the iterables the function returns", async () => {
    const out = await run(Testing.runOperation(nums, (s) => s.flatMap((x) => [x, x * 2])))
    assert.deepEqual(out, nums.map((b) => b.flatMap((x) => [x, x * 2])))
  })

  it("filter() keeps the elements that satisfy the predicate", async () => {
    const out = await run(Testing.runOperation(nums, (s) => s.filter((x) => x % 2 === 0)))
    assert.deepEqual(out, nums.map((b) => b.filter((x) => x % 2 === 0)))
  })

  it("chained narrow operators keep element order within a batch", async () => {
    const out = await run(
      Testing.runOperation(
        [["b a", "c"], ["d e f"]],
        (s) => s.flatMap((l) => l.split(" ")).map((w) => w.toUpperCase()).filter((w) => w !== "E"),
      ),
    )
    assert.deepEqual(out, [["B", "A", "C"], ["D", "F"]])
  })

  it("glom() turns each batch into one array (one partition per batch)", async () => {
    const out = await run(Testing.runOperation(nums, (s) => s.glom()))
    assert.deepEqual(out, nums.map((b) => [b]))
  })

  it("mapPartitions() applies the function to the whole batch", async () => {
    const out = await run(
      Testing.runOperation(nums, (s) => s.mapPartitions((batch) => [batch.reduce((a, b) => a + b, 0)])),
    )
    assert.deepEqual(out, [[10], [26], [42]])
  })

  it("repartition() keeps every element in order", async () => {
    const out = await run(Testing.runOperation([range(1, 10), range(11, 20)], (s) => s.repartition(5)))
    assert.deepEqual(out, [range(1, 10), range(11, 20)])
  })

  it("reduce() gives one element per non-empty batch and an empty batch for an empty one", async () => {
    const out = await run(Testing.runOperation([...nums, []], (s) => s.reduce((a, b) => a + b)))
    assert.deepEqual(out, [[10], [26], [42], []])
  })

  it("count() gives exactly one count per batch, 0 for an empty batch", async () => {
    const out = await run(
      Testing.runOperation([[], range(1, 1), range(1, 2), range(1, 3), range(1, 4)], (s) => s.count()),
    )
    assert.deepEqual(out, [[0], [1], [2], [3], [4]])
  })

  it("countByValue() counts occurrences per batch", async () => {
    const out = await run(Testing.runOperation([[1], [1, 1, 1], [1, 2], [1, 1, 2, 2]], (s) => s.countByValue()))
    assert.deepEqual(sorted(out), [[[1, 1]], [[1, 3]], [[1, 1], [2, 1]], [[1, 2], [2, 2]]])
  })

  it("union() gives this stream's elements, then that stream's", async () => {
    const input = [range(1, 4), range(101, 104), range(201, 204)]
    const out = await run(Testing.runOperation(input, (s) => s.union(s.map((x) => x + 4))))
    assert.deepEqual(out, [range(1, 8), range(101, 108), range(201, 208)])
  })

  it("union() fails the batch when a parent has no batch at that time", async () => {
    const input = [range(1, 4), range(101, 104), range(201, 204), null]
    const exit = await runExit(Testing.runOperation(input, (s) => s.union(s.map((x) => x + 4))))
    const error = failureOf(exit)
    assert.ok(error instanceof BatchJobError, String(error))
    assert.equal(error.batchTime, 4000)
    assert.match(error.message, /Could not generate a batch from a parent for unifying at time 4000 ms/)
  })

  it("StreamingContext.union() unions many streams in order", async () => {
    const input = [range(1, 4), range(101, 104), range(201, 204)]
    const out = await run(
      Testing.run((ssc) => {
        const s = Testing.input(ssc, input)
        return ssc.union([s, s.map((x) => x + 4), s.map((x) => x + 8)])
      }, { numBatches: 3 }),
    )
    assert.deepEqual(out, [range(1, 12), range(101, 112), range(201, 212)])
  })

  it("transform() applies a batch-level function every batch", async () => {
    const out = await run(Testing.runOperation(nums, (s) => s.transform((batch) => batch.map(String))))
    assert.deepEqual(out, nums.map((b) => b.map(String)))
  })

  it("transform() receives the batch time and may return an Effect", async () => {
    const out = await run(
      Testing.runOperation(
        [[1], [2]],
        (s) => s.transform((batch, time) => Effect.succeed(batch.map((x) => `${x}@${time}`))),
      ),
    )
    assert.deepEqual(out, [["1@1000"], ["2@2000"]])
  })

  it("transform() returning null fails the batch with a clear error", async () => {
    const exit = await runExit(
      Testing.runOperation([range(1, 4)], (s) => s.transform(() => null as unknown as Array<number>)),
    )
    const error = failureOf(exit)
    assert.ok(error instanceof BatchJobError)
    assert.match(error.message, /returned null; return an empty array for no elements/)
  })

  it("transform() fails the batch when its parent has no batch", async () => {
    const exit = await runExit(
      Testing.runOperation([range(1, 4), range(5, 8), null], (s) => s.transform((b) => b.map(String))),
    )
    const error = failureOf(exit)
    assert.ok(error instanceof BatchJobError)
    assert.match(error.message, /Could not generate a batch from the parent at time 3000 ms/)
  })

  it("a failing Effect in transform() surfaces as a BatchJobError carrying the cause", async () => {
    const exit = await runExit(
      Testing.runOperation([[1], [2]], (s) => s.transform((b, t) => t === 2000 ? Effect.fail("boom") : b)),
    )
    const error = failureOf(exit)
    assert.ok(error instanceof BatchJobError)
    assert.equal(error.batchTime, 2000)
    assert.equal(error.cause, "boom")
  })

  it("transformWith() joins two streams' batches of the same time", async () => {
    const out = await run(
      Testing.runOperation2(
        [["a", "b"], ["a", ""], [""], []],
        [["a", "b"], ["b", ""], [], [""]],
        (s1, s2) =>
          s1.mapToPair((x) => [x, 1]).transformWith(s2.mapToPair((x) => [x, "x"]), (a, b) => {
            const right = new Map(b)
            return a.flatMap(([k, v]) => right.has(k) ? [[k, [v, right.get(k)!]] as const] : [])
          }),
      ),
    )
    assert.deepEqual(sorted(out), [[["a", [1, "x"]], ["b", [1, "x"]]], [["", [1, "x"]]], [], []])
  })

  it("StreamingContext.transform() sees every stream's batch", async () => {
    const out = await run(
      Testing.run((ssc) => {
        const a = Testing.input(ssc, [[1], [2]])
        const b = Testing.input(ssc, [["x"], ["y"]])
        return ssc.transform([a, b], (batches, time) => [`${time}:${batches.map((x) => x.join()).join("|")}`])
      }, { numBatches: 2 }),
    )
    assert.deepEqual(out, [["1000:1|x"], ["2000:2|y"]])
  })
})

describe("keyed operators (BasicOperationsSuite)", () => {
  const words = [["a", "a", "b"], ["", ""], []]

  it("reduceByKey() merges the values of each key per batch", async () => {
    const out = await run(Testing.runOperation(words, (s) => s.mapToPair((x) => [x, 1]).reduceByKey((a, b) => a + b)))
    assert.deepEqual(sorted(out), [[["a", 2], ["b", 1]], [["", 2]], []])
  })

  it("reduceByKey() merges into a value that is undefined (a key's value is there even when undefined)", async () => {
    const pairs = [[["a", undefined], ["a", undefined], ["b", undefined]], [["a", "x"], ["a", undefined]]] as const
    const out = await run(
      Testing.runOperation<readonly [string, string | undefined], readonly [string, string | undefined]>(
        pairs,
        (s) => s.reduceByKey((a, b) => a === undefined && b === undefined ? "merged" : `${a}+${b}`),
      ),
    )
    assert.deepEqual(sorted(out), [[["a", "merged"], ["b", undefined]], [["a", "x+undefined"]]])
  })

  it("groupByKey() collects each key's values in arrival order", async () => {
    const out = await run(Testing.runOperation(words, (s) => s.mapToPair((x) => [x, 1]).groupByKey()))
    assert.deepEqual(sorted(out), [[["a", [1, 1]], ["b", [1]]], [["", [1, 1]]], []])
  })

  it("combineByKey() builds per-key combiners", async () => {
    const out = await run(
      Testing.runOperation(
        [[["a", 1], ["a", 3], ["b", 5]]] as Array<Array<readonly [string, number]>>,
        (s) =>
          s.combineByKey(
            (v): readonly [number, number] => [v, 1],
            ([sum, n], v) => [sum + v, n + 1] as const,
            ([a, b], [c, d]) => [a + c, b + d] as const,
          ),
      ),
    )
    assert.deepEqual(sorted(out), [[["a", [4, 2]], ["b", [5, 1]]]])
  })

  it("mapValues() transforms values and keeps keys", async () => {
    const out = await run(
      Testing.runOperation(
        words,
        (s) => s.mapToPair((x) => [x, 1]).reduceByKey((a, b) => a + b).mapValues((v) => v + 10),
      ),
    )
    assert.deepEqual(sorted(out), [[["a", 12], ["b", 11]], [["", 12]], []])
  })

  it("flatMapValues() flattens values and keeps keys", async () => {
    const out = await run(
      Testing.runOperation(
        words,
        (s) => s.mapToPair((x) => [x, 1]).reduceByKey((a, b) => a + b).flatMapValues((v) => [v, v + 10]),
      ),
    )
    assert.deepEqual(sorted(out), sorted([[["a", 2], ["a", 12], ["b", 1], ["b", 11]], [["", 2], ["", 12]], []]))
  })

  const left = [["a", "b"], ["a", ""], [""], []]
  const right = [["a", "b"], ["b", ""], [], [""]]
  const pairs = <T>(s: DStream.DStream<string>, v: T) => s.mapToPair((x) => [x, v])

  it("join() pairs matching keys of two streams", async () => {
    const out = await run(Testing.runOperation2(left, right, (a, b) => pairs(a, 1).join(pairs(b, "x"))))
    assert.deepEqual(sorted(out), [[["a", [1, "x"]], ["b", [1, "x"]]], [["", [1, "x"]]], [], []])
  })

  it("leftOuterJoin() keeps every left pair, Option.none() when unmatched", async () => {
    const out = await run(Testing.runOperation2(left, right, (a, b) => pairs(a, 1).leftOuterJoin(pairs(b, "x"))))
    const { none, some } = Option
    assert.deepEqual(
      sorted(out),
      sorted([
        [["a", [1, some("x")]], ["b", [1, some("x")]]],
        [["", [1, some("x")]], ["a", [1, none()]]],
        [["", [1, none()]]],
        [],
      ]),
    )
  })

  it("rightOuterJoin() keeps every right pair, Option.none() when unmatched", async () => {
    const out = await run(Testing.runOperation2(left, right, (a, b) => pairs(a, 1).rightOuterJoin(pairs(b, "x"))))
    const { none, some } = Option
    assert.deepEqual(
      sorted(out),
      sorted([
        [["a", [some(1), "x"]], ["b", [some(1), "x"]]],
        [["", [some(1), "x"]], ["b", [none(), "x"]]],
        [],
        [["", [none(), "x"]]],
      ]),
    )
  })

  it("fullOuterJoin() keeps every key of either side", async () => {
    const out = await run(Testing.runOperation2(left, right, (a, b) => pairs(a, 1).fullOuterJoin(pairs(b, "x"))))
    const { none, some } = Option
    assert.deepEqual(
      sorted(out),
      sorted([
        [["a", [some(1), some("x")]], ["b", [some(1), some("x")]]],
        [["", [some(1), some("x")]], ["a", [some(1), none()]], ["b", [none(), some("x")]]],
        [["", [some(1), none()]]],
        [["", [none(), some("x")]]],
      ]),
    )
  })

  it("cogroup() groups both sides per key, empty arrays for a missing side", async () => {
    const out = await run(
      Testing.runOperation2(
        [["a", "a", "b"], ["a", ""], [""], []],
        [["a", "a", "b"], ["b", ""], [], []],
        (a, b) => pairs(a, 1).cogroup(pairs(b, "x")),
      ),
    )
    assert.deepEqual(
      sorted(out),
      sorted([
        [["a", [[1, 1], ["x", "x"]]], ["b", [[1], ["x"]]]],
        [["a", [[1], []]], ["b", [[], ["x"]]], ["", [[1], ["x"]]]],
        [["", [[1], []]]],
        [],
      ]),
    )
  })

  it("keyed operators group tuple keys by value", async () => {
    const out = await run(
      Testing.runOperation(
        [[[["x", 1], 1], [["x", 1], 2], [["y", 2], 3]]] as Array<Array<readonly [readonly [string, number], number]>>,
        (s) => s.reduceByKey((a, b) => a + b),
      ),
    )
    assert.deepEqual(sorted(out), [[[["x", 1], 3], [["y", 2], 3]]])
  })

  it("keyBy() pairs every element with its key", async () => {
    const out = await run(Testing.runOperation([["apple", "kiwi"]], (s) => s.keyBy((w) => w.length)))
    assert.deepEqual(out, [[[5, "apple"], [4, "kiwi"]]])
  })
})

describe("pipeable functions share the fluent implementation", () => {
  it("DStream.map / flatMap / reduceByKey work through pipe()", async () => {
    const out = await run(
      Testing.runOperation([["a b a"]], (s) =>
        s.pipe(
          DStream.flatMap((l: string) => l.split(" ")),
          DStream.mapToPair((w: string) => [w, 1] as const),
          DStream.reduceByKey((a: number, b: number) => a + b),
        )),
    )
    assert.deepEqual(sorted(out), [[["a", 2], ["b", 1]]])
  })

  it("DStream.count and DStream.glom are pipeable values", async () => {
    const out = await run(Testing.runOperation([[1, 2, 3]], (s) => s.pipe(DStream.count)))
    assert.deepEqual(out, [[3]])
  })
})

describe("slice and remember", () => {
  it("slice() returns the batches in [from, to], both inclusive", async () => {
    const slices: Array<Array<number>> = []
    await run(
      Testing.run((ssc) => {
        const s = Testing.input(ssc, [[1], [2], [3], [4]]).remember("10 seconds")
        s.foreachBatch((_batch, time) =>
          time === 4000
            ? Effect.gen(function* () {
              for (const [from, to] of [[0, 1000], [0, 2000], [1000, 2000], [2000, 4000]]) {
                const got = yield* s.slice(from, to)
                slices.push(got.flatMap(([, b]) => b))
              }
            })
            : undefined
        )
        return s
      }, { numBatches: 4 }),
    )
    assert.deepEqual(slices, [[1], [1, 2], [1, 2], [2, 3, 4]])
  })

  it("slice() before start fails with a clear error", async () => {
    const exit = await runExit(
      Effect.gen(function* () {
        const { StreamingContext } = yield* Effect.promise(() => import("../mod.ts"))
        const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
        return yield* Testing.input(ssc, [[1]]).slice(0, 1000)
      }).pipe(Effect.provide(NodeServices.layer)),
    )
    assert.match(String((failureOf(exit) as Error).message), /has not been initialized/)
  })

  it("old batches are forgotten after the remember duration", async () => {
    let node: DStream.DStream<number> | undefined
    const sizes: Array<number> = []
    await run(
      Testing.run((ssc) => {
        node = Testing.input(ssc, [[1], [2], [3], [4], [5], [6]]).map((x) => x).remember("2 seconds")
        node.foreachBatch(() => {
          sizes.push(node!.node.generated.size)
        })
        return node
      }, { numBatches: 6 }),
    )
    // Remember 2 s with 1 s batches: at most the current batch and the one before survive a batch.
    assert.ok(Math.max(...sizes) <= 3, `remembered ${sizes}`)
    assert.ok(node!.node.generated.size <= 2)
  })
})
