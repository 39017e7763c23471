/**
 * Stateful operators: the cases of Spark's MapWithStateSuite, MapWithStateRDDSuite and the
 * updateStateByKey cases of BasicOperationsSuite, with their expected outputs. Spark compares
 * these batches as sets (`useSet = true` / `toSet`), so batches are sorted before comparing.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { type Duration, Effect, Option } from "effect"
import {
  BatchJobError,
  Checkpoint,
  DStream,
  State,
  StateSpec,
  StreamingContext,
  Testing,
  ValidationError,
} from "../mod.ts"
import { failureOf, run, runExit, sorted } from "./_support/run.ts"

const words = [[], ["a"], ["a", "b"], ["a", "b", "c"], ["a", "b"], ["a"], []]
const stateData = [
  [],
  [["a", 1]],
  [["a", 2], ["b", 1]],
  [["a", 3], ["b", 2], ["c", 1]],
  [["a", 4], ["b", 3], ["c", 1]],
  [["a", 5], ["b", 3], ["c", 1]],
  [["a", 5], ["b", 3], ["c", 1]],
]

/** Spark's MapWithStateSuite `getOperationOutput`: the mapped batches and the state snapshots. */
const mapWithStateOutput = <S, T>(
  input: ReadonlyArray<ReadonlyArray<string>>,
  spec: StateSpec<string, number, S, T>,
  numBatches = input.length,
) =>
  Effect.gen(function* () {
    const result = yield* Testing.run((ssc) => {
      const stream = Testing.input(ssc, input).map((x) => [x, 1] as const).mapWithState(spec)
      return { outputs: stream, snapshots: stream.stateSnapshots() }
    }, { numBatches, checkpoint: "checkpoint" })
    if (result.failure !== undefined) return yield* Effect.fail(result.failure)
    return {
      outputs: result.outputs.outputs.map((c) => c.batch),
      snapshots: result.outputs.snapshots.map((c) => c.batch),
    }
  })

const sum = (values: ReadonlyArray<number>): number => values.reduce((a, b) => a + b, 0)

describe("State (MapWithStateSuite: state - get, exists, update, remove)", () => {
  const check = (
    state: State.StateImpl<number>,
    expected: Option.Option<number>,
    flags: { updated?: boolean; removed?: boolean; timingOut?: boolean } = {},
  ) => {
    if (Option.isSome(expected)) {
      assert.equal(state.exists(), true)
      assert.equal(state.get(), expected.value)
      assert.deepEqual(state.getOption(), expected)
    } else {
      assert.equal(state.exists(), false)
      assert.throws(() => state.get(), { message: "State is not set" })
      assert.deepEqual(state.getOption(), Option.none())
    }
    assert.equal(state.isTimingOut(), flags.timingOut ?? false)
    if (flags.timingOut) {
      assert.throws(() => state.remove(), { message: "Cannot remove the state that is timing out" })
      assert.throws(() => state.update(-1), { message: "Cannot update the state that is timing out" })
    }
    assert.equal(state.isUpdated(), flags.updated ?? false)
    assert.equal(state.isRemoved(), flags.removed ?? false)
    if (flags.removed) {
      assert.throws(() => state.remove(), { message: "Cannot remove the state that has already been removed" })
      assert.throws(() => state.update(-1), { message: "Cannot update the state after it has been removed" })
    }
  }

  it("State tracks exists/get/update/remove and refuses misuse with Spark's messages", () => {
    let state = State.make<number>()
    check(state, Option.none())
    state.wrap(Option.none())
    check(state, Option.none())
    state.wrap(Option.some(1))
    check(state, Option.some(1))
    state.update(2)
    check(state, Option.some(2), { updated: true })
    state = State.make<number>()
    state.update(2)
    check(state, Option.some(2), { updated: true })
    state.remove()
    check(state, Option.none(), { removed: true })
    state.wrapTimingOut(3)
    check(state, Option.some(3), { timingOut: true })
    assert.equal(String(State.make<number>()), "<state not set>")
    assert.equal(String(State.make(Option.some(7))), "7")
  })
})

describe("mapWithState (MapWithStateSuite)", () => {
  it("mapWithState() basic operations with the simple API emit the running count", async () => {
    const spec = StateSpec.function((_key: string, value: Option.Option<number>, state: State.State<number>) => {
      const total = Option.getOrElse(value, () => 0) + Option.getOrElse(state.getOption(), () => 0)
      state.update(total)
      return total
    })
    const { outputs, snapshots } = await run(mapWithStateOutput(words, spec))
    assert.deepEqual(sorted(outputs), sorted([[], [1], [2, 1], [3, 2, 1], [4, 3], [5], []]))
    assert.deepEqual(sorted(snapshots), sorted(stateData))
  })

  it("mapWithState() basic operations with the advanced API (batch time, optional output)", async () => {
    const spec = StateSpec.functionWithTime(
      (_time: number, key: string, value: Option.Option<number>, state: State.State<number>) => {
        state.update(Option.getOrElse(value, () => 0) + Option.getOrElse(state.getOption(), () => 0))
        return Option.some(key + key)
      },
    )
    const { outputs, snapshots } = await run(mapWithStateOutput(words, spec))
    assert.deepEqual(
      sorted(outputs),
      sorted([[], ["aa"], ["aa", "bb"], ["aa", "bb", "cc"], ["aa", "bb"], ["aa"], []]),
    )
    assert.deepEqual(sorted(snapshots), sorted(stateData))
  })

  it("mapWithState() can emit the states as mapped data", async () => {
    const spec = StateSpec.functionWithTime(
      (_time: number, key: string, value: Option.Option<number>, state: State.State<number>) => {
        const total = Option.getOrElse(value, () => 0) + Option.getOrElse(state.getOption(), () => 0)
        state.update(total)
        return Option.some([key, total] as const)
      },
    )
    const { outputs, snapshots } = await run(mapWithStateOutput(words, spec))
    assert.deepEqual(
      sorted(outputs),
      sorted([
        [],
        [["a", 1]],
        [["a", 2], ["b", 1]],
        [["a", 3], ["b", 2], ["c", 1]],
        [["a", 4], ["b", 3]],
        [["a", 5]],
        [],
      ]),
    )
    assert.deepEqual(sorted(snapshots), sorted(stateData))
  })

  it("mapWithState() starts from the initial state and may emit nothing", async () => {
    const spec = StateSpec.functionWithTime(
      (_time: number, _key: string, value: Option.Option<number>, state: State.State<number>) => {
        state.update(Option.getOrElse(value, () => 0) + Option.getOrElse(state.getOption(), () => 0))
        return Option.none<number>()
      },
    ).initialState([["a", 5], ["b", 10], ["c", -20], ["d", 0]])
    const { outputs, snapshots } = await run(mapWithStateOutput(words, spec))
    assert.deepEqual(outputs, words.map(() => []))
    assert.deepEqual(
      sorted(snapshots),
      sorted([
        [["a", 5], ["b", 10], ["c", -20], ["d", 0]],
        [["a", 6], ["b", 10], ["c", -20], ["d", 0]],
        [["a", 7], ["b", 11], ["c", -20], ["d", 0]],
        [["a", 8], ["b", 12], ["c", -19], ["d", 0]],
        [["a", 9], ["b", 13], ["c", -19], ["d", 0]],
        [["a", 10], ["b", 13], ["c", -19], ["d", 0]],
        [["a", 10], ["b", 13], ["c", -19], ["d", 0]],
      ]),
    )
  })

  it("mapWithState() removes states the function removes", async () => {
    const input = [[], ["a"], ["a", "b"], ["a", "b", "c"], ["a", "b", "c"], ["a", "b"], ["a"], []]
    const spec = StateSpec.functionWithTime(
      (_time: number, key: string, value: Option.Option<number>, state: State.State<number>) => {
        if (state.exists()) {
          state.remove()
          return Option.some(key)
        }
        state.update(Option.getOrThrow(value))
        return Option.none()
      },
    ).numPartitions(1)
    const { outputs, snapshots } = await run(mapWithStateOutput(input, spec))
    assert.deepEqual(sorted(outputs), sorted([[], [], ["a"], ["b"], ["a", "c"], ["b"], ["a"], []]))
    assert.deepEqual(
      sorted(snapshots),
      sorted([[], [["a", 1]], [["b", 1]], [["a", 1], ["c", 1]], [["b", 1]], [["a", 1]], [], []]),
    )
  })

  it("mapWithState() times out idle keys once, on checkpoint batches, with isTimingOut()", async () => {
    const input = [["a", "b", "c"], ["a", "b"], ["a"], [], [], ["a"], ...Array.from({ length: 20 }, () => ["a"])]
    const calls: Array<readonly [number, string, boolean]> = []
    const spec = StateSpec.functionWithTime(
      (time: number, key: string, value: Option.Option<number>, state: State.State<number>) => {
        if (Option.isSome(value)) state.update(1)
        calls.push([time, key, state.isTimingOut()])
        return state.isTimingOut() ? Option.some(key) : Option.none()
      },
    ).timeout("3 seconds")
    const { outputs, snapshots } = await run(mapWithStateOutput(input, spec, 20))
    // b and c are returned once each, when they time out
    assert.deepEqual(outputs.flat().sort(), ["b", "c"])
    // a, b and c all had state at one point
    assert.ok(snapshots.some((s) => JSON.stringify(sorted([s])[0]) === JSON.stringify([["a", 1], ["b", 1], ["c", 1]])))
    // finally only a is left
    assert.deepEqual(snapshots[snapshots.length - 1], [["a", 1]])
    // the time-out is detected at the first checkpoint batch (10 × 1 s), not earlier
    assert.deepEqual(calls.filter(([, , timingOut]) => timingOut).map(([t, k]) => [t, k]).sort(), [[10000, "b"], [
      10000,
      "c",
    ]])
  })

  it("mapWithState() uses 10 slides as its default checkpoint interval, or the one set", async () => {
    const durationOf = (batchInterval: Duration.Input, explicit?: Duration.Input) =>
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval })
        ssc.checkpoint("checkpoint")
        const stream = Testing.input(ssc, [[1]]).map((x) => [x, 1] as const).mapWithState(
          StateSpec.function((_k: number, _v: Option.Option<number>, _s: State.State<number>) => 0),
        )
        if (explicit !== undefined) stream.checkpoint(explicit)
        stream.foreachBatch(() => {})
        yield* ssc.start
        const ms = stream.node.checkpointMillis
        yield* ssc.stop()
        return ms
      }).pipe(Effect.provide(Checkpoint.layerMemory))
    assert.equal(await run(durationOf("100 millis")), 1000)
    assert.equal(await run(durationOf("1 second")), 10000)
    assert.equal(await run(durationOf("10 seconds")), 100000)
    assert.equal(await run(durationOf("100 millis", "2 seconds")), 2000)
    assert.equal(await run(durationOf("1 second", "2 seconds")), 2000)
    assert.equal(await run(durationOf("10 seconds", "20 seconds")), 20000)
  })

  it("mapWithState() calls the function once per record, not once per key", async () => {
    const seen: Array<string> = []
    const spec = StateSpec.function((key: string, value: Option.Option<number>, state: State.State<number>) => {
      seen.push(`${key}=${Option.getOrThrow(value)}`)
      state.update(Option.getOrElse(state.getOption(), () => 0) + 1)
      return state.get()
    })
    const out = await run(
      Testing.run(
        (ssc) => Testing.input(ssc, [["a", "a", "b"], [], ["a"]]).map((x) => [x, 1] as const).mapWithState(spec),
        {
          numBatches: 3,
          checkpoint: "checkpoint",
        },
      ),
    )
    assert.deepEqual(out, [[1, 2, 1], [], [3]])
    assert.deepEqual(seen, ["a=1", "a=1", "b=1", "a=1"])
  })

  it("mapWithState() fails the batch with a StateError when the function misuses State", async () => {
    const spec = StateSpec.function((_key: string, _value: Option.Option<number>, state: State.State<number>) => {
      state.remove()
      state.update(1)
      return 0
    })
    const exit = await runExit(
      Testing.run((ssc) => Testing.input(ssc, [["a"]]).map((x) => [x, 1] as const).mapWithState(spec), {
        numBatches: 1,
        checkpoint: "checkpoint",
      }),
    )
    const error = failureOf(exit)
    assert.ok(error instanceof BatchJobError)
    assert.ok(error.cause instanceof State.StateError)
    assert.equal(error.cause.message, "Cannot update the state after it has been removed")
  })

  it("mapWithState() on a state that times out refuses update with a clear message", async () => {
    const spec = StateSpec.functionWithTime(
      (_t: number, _key: string, value: Option.Option<number>, state: State.State<number>) => {
        if (Option.isSome(value)) state.update(1)
        else state.update(2)
        return Option.none()
      },
    ).timeout("1 second")
    const exit = await runExit(
      Testing.run(
        (ssc) => Testing.input(ssc, [["a"]]).map((x) => [x, 1] as const).mapWithState(spec).checkpoint("3 seconds"),
        { numBatches: 3, checkpoint: "checkpoint" },
      ),
    )
    const error = failureOf(exit)
    assert.ok(error instanceof BatchJobError)
    assert.equal(error.batchTime, 3000)
    assert.equal((error.cause as Error).message, "Cannot update the state that is timing out")
  })
})

describe("updateStateByKey (BasicOperationsSuite)", () => {
  const input = [["a"], ["a", "b"], ["a", "b", "c"], ["a", "b"], ["a"], []]
  const counting = (values: ReadonlyArray<number>, state: Option.Option<number>) =>
    Option.some(sum(values) + Option.getOrElse(state, () => 0))

  it("updateStateByKey() keeps a running count per key, every key in every batch", async () => {
    const out = await run(
      Testing.runOperation(input, (s) => s.map((x) => [x, 1] as const).updateStateByKey(counting), {
        checkpoint: "checkpoint",
      }),
    )
    assert.deepEqual(
      sorted(out),
      sorted([
        [["a", 1]],
        [["a", 2], ["b", 1]],
        [["a", 3], ["b", 2], ["c", 1]],
        [["a", 4], ["b", 3], ["c", 1]],
        [["a", 5], ["b", 3], ["c", 1]],
        [["a", 5], ["b", 3], ["c", 1]],
      ]),
    )
  })

  it("updateStateByKey() starts from the initial state", async () => {
    const out = await run(
      Testing.runOperation(
        input,
        (s) => s.map((x) => [x, 1] as const).updateStateByKey(counting, { initialState: [["a", 1], ["c", 2]] }),
        { checkpoint: "checkpoint" },
      ),
    )
    assert.deepEqual(
      sorted(out),
      sorted([
        [["a", 2], ["c", 2]],
        [["a", 3], ["b", 1], ["c", 2]],
        [["a", 4], ["b", 2], ["c", 3]],
        [["a", 5], ["b", 3], ["c", 3]],
        [["a", 6], ["b", 3], ["c", 3]],
        [["a", 6], ["b", 3], ["c", 3]],
      ]),
    )
  })

  it("updateStateByKey() with the batch time and key as input", async () => {
    const out = await run(
      Testing.runOperation(
        input,
        (s) =>
          s.map((x) => [x, 1] as const).updateStateByKey({
            update: (time: number, _key: string, values: ReadonlyArray<number>, state: Option.Option<number>) =>
              values.length > 0
                ? Option.some(time + Option.getOrElse(state, () => 0))
                : Option.some(Option.getOrElse(state, () => 0)),
            initialState: [["a", 0], ["c", 0]],
          }),
        { checkpoint: "checkpoint" },
      ),
    )
    assert.deepEqual(
      sorted(out),
      sorted([
        [["a", 1000], ["c", 0]],
        [["a", 3000], ["b", 2000], ["c", 0]],
        [["a", 6000], ["b", 5000], ["c", 3000]],
        [["a", 10000], ["b", 9000], ["c", 3000]],
        [["a", 15000], ["b", 9000], ["c", 3000]],
        [["a", 15000], ["b", 9000], ["c", 3000]],
      ]),
    )
  })

  it("updateStateByKey() object lifecycle: runs on batches without input and removes on None", async () => {
    class StateObject {
      counter = 0
      expireCounter = 0
    }
    const out = await run(
      Testing.runOperation(
        [["a", "b"], null, ["a", "c", "a"], ["c"], null, null],
        (s) =>
          s.map((x) => [x, 1] as const).updateStateByKey(
            (values: ReadonlyArray<number>, state: Option.Option<StateObject>) => {
              const obj = Option.getOrElse(state, () => new StateObject())
              const n = sum(values)
              if (n === 0) obj.expireCounter += 1
              else {
                obj.counter += n
                obj.expireCounter = 0
              }
              return obj.expireCounter === 2 ? Option.none() : Option.some(obj)
            },
          ).mapValues((o) => o.counter),
        { checkpoint: "checkpoint" },
      ),
    )
    assert.deepEqual(
      sorted(out),
      sorted([[["a", 1], ["b", 1]], [["a", 1], ["b", 1]], [["a", 3], ["c", 1]], [["a", 3], ["c", 2]], [["c", 2]], []]),
    )
  })

  it("updateStateByKey() produces no batch before its input's first batch, even with an initial state", async () => {
    const out = await run(
      Testing.runWithTimes(
        (ssc) =>
          Testing.input(ssc, [null, ["a"]]).map((x) => [x, 1] as const).updateStateByKey(counting, {
            initialState: [["z", 9]],
          }),
        { numBatches: 3, checkpoint: "checkpoint" },
      ),
    )
    assert.deepEqual(out.map(([t, b]) => [t, sorted([b])[0]]), [[2000, [["a", 1], ["z", 9]]], [3000, [["a", 1], [
      "z",
      9,
    ]]]])
  })

  it("updateStateByKey() groups tuple keys by value", async () => {
    const out = await run(
      Testing.runOperation(
        [[[["x", 1], 1], [["x", 1], 2]], [[["x", 1], 3]]] as Array<Array<readonly [readonly [string, number], number]>>,
        (s) => s.updateStateByKey(counting),
        { checkpoint: "checkpoint" },
      ),
    )
    assert.deepEqual(out, [[[["x", 1], 3]], [[["x", 1], 6]]])
  })

  it("updateStateByKey() and the pipeable form agree", async () => {
    const out = await run(
      Testing.runOperation(
        input,
        (s) => s.map((x) => [x, 1] as const).pipe(DStream.updateStateByKey(counting)),
        { checkpoint: "checkpoint" },
      ),
    )
    assert.deepEqual(sorted(out)[5], [["a", 5], ["b", 3], ["c", 1]])
  })

  it("a stateful operator without a checkpoint directory fails start and leaves the context STOPPED", async () => {
    const result = await run(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
        Testing.input(ssc, [["a"]]).map((x) => [x, 1] as const).updateStateByKey(counting).print()
        const exit = yield* Effect.exit(ssc.start)
        return { exit, state: yield* ssc.state }
      }),
    )
    const error = failureOf(result.exit)
    assert.ok(error instanceof ValidationError)
    assert.match(error.message, /StateDStream needs a checkpoint directory/)
    assert.equal(result.state, "STOPPED")
  })
})
