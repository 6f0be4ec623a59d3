"""Lowering rules the interpreter dispatches to: what a `skip` becomes when shapes differ
(shortcuts), and bracket sugar such as `inception[...]` (sugar).  A new op family brings its
lowering here as a rule, without editing the interpreter."""
