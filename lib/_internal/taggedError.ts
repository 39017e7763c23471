/**
 * The class a `Data.TaggedError(tag)` call returns, written out so that an error class can
 * extend a constant with an explicit type (JSR's fast check cannot infer a call as a superclass).
 *
 * @internal
 */
import type { Cause } from "effect"

/**
 * `Data.TaggedError(Tag)<A>` as a type: `new (args) => YieldableError & { _tag: Tag } & A`.
 *
 * @internal
 */
export type TaggedErrorClass<Tag extends string, A extends Record<string, unknown>> = new (
  args: keyof A extends never ? void : { readonly [P in keyof A]: A[P] },
) => Cause.YieldableError & { readonly _tag: Tag } & Readonly<A>
