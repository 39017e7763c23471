/**
 * Spark's `DStreamGraph`: the inputs and output operations of one context, validation and
 * initialisation at start, and forgetting old batches after each batch.
 * @internal
 */
import { ValidationError } from "../Errors.ts"
import type { InputNode, Node, OutputNode } from "./node.ts"

/** @internal */
export class Graph {
  readonly inputs: Array<InputNode<any>> = []
  readonly outputs: Array<OutputNode<any>> = []
  readonly nodes: Array<Node<any>> = []
  zeroTime: number | undefined
  /** `ssc.remember(duration)`: a minimum remember duration for every stream. */
  rememberMillis: number | undefined

  constructor(readonly batchMillis: number) {}

  /** Validates and initialises the graph for zero time `zero`; throws `ValidationError`. */
  start(zero: number): void {
    if (this.outputs.length === 0) {
      throw new ValidationError({
        message: "Cannot start StreamingContext: no output operations registered, so nothing to execute",
      })
    }
    if (this.zeroTime !== undefined) {
      throw new ValidationError({ message: "DStream graph computation already started" })
    }
    for (const output of this.outputs) output.initialize(zero)
    for (const input of this.inputs) if (input.zeroTime === undefined) input.initialize(zero)
    for (const output of this.outputs) output.remember(this.rememberMillis)
    for (const input of this.inputs) input.remember(this.rememberMillis)
    for (const output of this.outputs) output.validateAtStart()
    this.zeroTime = zero
  }

  /** Forgets batches each node no longer needs after batch `t`. */
  clearMetadata(t: number): void {
    for (const output of this.outputs) output.clearMetadata(t)
    for (const input of this.inputs) input.clearMetadata(t)
  }
}
