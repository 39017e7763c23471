/**
 * Spark's `FileInputDStream` as a graph input: each batch selects the files that are new for
 * its time (by modification time, see `receivers/file.ts`) and reads them. No receiver.
 * @internal
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { FileSelector, type FileStreamOptions, readFileBytes, readTextLines } from "../../receivers/file.ts"
import {
  type Batch,
  type InputCheckpoint,
  InputNode,
  type InputRuntime,
  type NodeContext,
  type NodeEnv,
} from "./node.ts"

export type { FileStreamOptions }

/** @internal */
export class FileInputNode<A> extends InputNode<A> {
  readonly kind = "FileInputDStream"
  readonly selector: FileSelector

  constructor(
    ctx: NodeContext,
    readonly directory: string,
    readonly decode: "text" | ((bytes: Uint8Array, path: string) => Iterable<A>),
    options?: FileStreamOptions,
  ) {
    super(ctx)
    this.selector = new FileSelector(directory, ctx.batchMillis, options)
    this.minRememberMillis = this.selector.durationToRemember
  }

  get name(): string {
    return `files ${this.directory}`
  }

  override start(rt: InputRuntime): Effect.Effect<void, never, Scope.Scope | NodeEnv> {
    return Effect.sync(() => {
      if (this.selector.initialModTimeIgnoreThreshold === undefined) this.selector.init(rt.startTime)
    })
  }

  /** The selector's threshold and the files selected for every remembered batch time. */
  override checkpointData(): InputCheckpoint {
    const selector = this.selector
    return {
      key: `FileInputDStream#${this.streamId}`,
      snapshot: () => ({ threshold: selector.initialModTimeIgnoreThreshold, selections: selector.snapshot() }),
      restore: (data) => {
        const d = data as {
          threshold?: number
          selections: ReadonlyArray<{ time: number; files: ReadonlyArray<string> }>
        }
        if (typeof d.threshold === "number") selector.init(d.threshold)
        selector.restore(d.selections)
      },
    }
  }

  compute(t: number): Effect.Effect<Batch<A>, unknown, NodeEnv> {
    return Effect.gen({ self: this }, function* () {
      const files = yield* this.selector.select(t)
      let batch: Array<A>
      if (this.decode === "text") {
        batch = (yield* readTextLines(files)) as Array<A>
      } else {
        batch = []
        for (const { path, bytes } of yield* readFileBytes(files)) {
          for (const a of this.decode(bytes, path)) batch.push(a)
        }
      }
      this.record(t, batch.length, { files })
      return batch
    })
  }
}
