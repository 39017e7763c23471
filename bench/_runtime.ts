/** What the benchmarks print about the runtime running them, and a forced GC where available. */
import process from "node:process"

interface RuntimeGlobals {
  readonly Bun?: { readonly version: string; readonly gc?: (force: boolean) => void }
  readonly Deno?: { readonly version: { readonly deno: string } }
  readonly gc?: (force?: boolean) => void
}

const globals = globalThis as unknown as RuntimeGlobals

/** `bun 1.4.5`, `deno 2.9.6` or `node v20…`. */
export const runtimeName: string = globals.Bun !== undefined
  ? `bun ${globals.Bun.version}`
  : globals.Deno !== undefined
  ? `deno ${globals.Deno.version.deno}`
  : `node ${process.version}`

/**
 * A full, synchronous GC when the runtime exposes one: `Bun.gc(true)`, or V8's `gc()` with no
 * argument under `--expose-gc` (Deno: `--v8-flags=--expose-gc`). V8's `gc(true)` is only a
 * young-generation collection, so it must not be used for heap figures.
 */
export const collectGarbage = (): void => {
  if (typeof globals.Bun?.gc === "function") globals.Bun.gc(true)
  else if (typeof globals.gc === "function") globals.gc()
}

/** `true` when {@link collectGarbage} can force a collection (heap figures are meaningful). */
export const canCollectGarbage: boolean = typeof globals.Bun?.gc === "function" || typeof globals.gc === "function"
