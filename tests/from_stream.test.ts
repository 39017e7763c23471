/**
 * Effect streams as inputs (`Receiver.fromStream`): records arriving between ticks go to the
 * next batch; a failing stream is a receiver error and is run again per the restart schedule; a
 * finite stream ends its input without a restart.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { Effect, Queue, Schedule, Stream } from "effect"
import { Receiver, Testing } from "../mod.ts"
import { run } from "./_support/run.ts"

describe("Receiver.fromStream", () => {
  it("records arriving between ticks go to the next batch", async () => {
    const result = await run(Effect.gen(function* () {
      const queue = yield* Queue.unbounded<string>()
      return yield* Testing.timeline((ssc) => ({
        words: ssc.receiverStream(Receiver.fromStream(Stream.fromQueue(queue), { name: "words" })),
      }))
        .at(500, Queue.offerAll(queue, ["a", "b"]))
        .at(1_200, Queue.offer(queue, "c"))
        .at(1_700, Queue.offer(queue, "d"))
        .run(4_000)
    }))
    assert.deepEqual(result.outputs.words.map((c) => [c.time, c.batch]), [
      [1000, ["a", "b"]],
      [2000, ["c", "d"]],
      [3000, []],
      [4000, []],
    ])
  })

  it("a finite stream ends its input: later batches are empty and it is not run again", async () => {
    let runs = 0
    const result = await run(
      Testing.timeline((ssc) => ({
        nums: ssc.receiverStream(Receiver.fromStream(
          Stream.suspend(() => {
            runs++
            return Stream.fromIterable([1, 2, 3])
          }),
          { restartSchedule: Schedule.spaced("100 millis") },
        )),
      })).run(3_000),
    )
    assert.deepEqual(result.outputs.nums.map((c) => c.batch), [[1, 2, 3], [], []])
    assert.equal(runs, 1)
  })

  it("a failing stream is a receiver error event and is run again after the restart schedule", async () => {
    let runs = 0
    const errors: Array<string> = []
    const result = await run(Testing.harness(
      (ssc) => {
        ssc.addStreamingListener((e) => {
          if (e._tag === "ReceiverError") errors.push(`${e.receiverInfo.name}: ${e.receiverInfo.lastErrorMessage}`)
        })
        return {
          nums: ssc.receiverStream(Receiver.fromStream(
            Stream.suspend(() => {
              runs++
              return runs === 1
                ? Stream.concat(Stream.make(1), Stream.fail(new Error("source went away")))
                : Stream.make(2)
            }),
            { name: "flaky", restartSchedule: Schedule.spaced("300 millis") },
          )),
        }
      },
      {},
      (h) => Effect.andThen(h.advanceBatches(2), h.outputs),
    ))
    assert.equal(runs, 2)
    assert.deepEqual(result.nums.flatMap((c) => c.batch), [1, 2])
    assert.equal(errors.length, 1)
    assert.match(errors[0], /^flaky: .*source went away/)
  })
})
