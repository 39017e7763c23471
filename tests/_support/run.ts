/** Small helpers shared by the tests. */
import { Effect, Exit } from "effect"
import { Runtime } from "../../mod.ts"

/**
 * Provides the runtime's platform services (`Runtime.layer`: FileSystem, Path, the UI's server),
 * for pipelines that read or write files; the core builds none itself.
 */
export const withPlatform = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
): Effect.Effect<A, E, Exclude<R, Runtime.Services>> => Effect.provide(effect, Runtime.layer)

/** Runs an Effect as a promise. */
export const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(effect)

/** Runs an Effect and returns its exit. */
export const runExit = <A, E>(effect: Effect.Effect<A, E>): Promise<Exit.Exit<A, E>> => Effect.runPromiseExit(effect)

const key = (u: unknown): string => JSON.stringify(u, (_k, v) => (typeof v === "bigint" ? String(v) : v))

/** Each batch's elements sorted by their JSON form (Spark's `useSet = true`). */
export const sorted = <A>(batches: ReadonlyArray<ReadonlyArray<A>>): Array<Array<A>> =>
  batches.map((b) => [...b].sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0)))

/** The failure of an exit (its first typed error or defect). */
export const failureOf = (exit: Exit.Exit<unknown, unknown>): unknown => {
  if (Exit.isSuccess(exit)) return undefined
  for (const r of exit.cause.reasons) {
    if (r._tag === "Fail") return r.error
    if (r._tag === "Die") return r.defect
  }
  return exit.cause
}
