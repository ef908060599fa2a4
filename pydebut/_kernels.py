"""Numba kernels that apply a whole DeBut chain in one call.

Only kernels live here: they take arrays and integers, write into a
preallocated output and validate nothing (the operator validates first).

A chain is passed as a *plan*:

- ``specs``: int64 array ``(L, 5)`` of ``(p, q, r, s, t)`` in **application
  order** (the factor applied first comes first);
- ``offsets``: int64 array ``(L + 1,)``; factor ``l``'s weights are
  ``weights[offsets[l]:offsets[l + 1]]``, the C-order ravel of
  ``W[b, rho, sigma, alpha]``;
- ``weights``: the flat weight buffer, of the dtype of the data.

Blocks of vectors take a *batch plan* (:mod:`pydebut._batched`) instead: the
same ``specs``, the ``passes`` (one factor, or a group of up to four 2x2
factors applied in one pass) and the weights packed pass by pass.

One vector is a 1-D array; the ``vector_*`` kernels vectorise along the
diagonal index ``alpha``, and :func:`apply_chain_vector_parallel` splits a long
vector between threads, synchronising only where the split of the rows changes.
A block of vectors is a C-ordered ``(rows, batch)`` array and the ``lanes_*``
kernels work on a window of ``lanes`` columns starting at a given column, so
the innermost loop runs over contiguous columns whatever ``t`` is, and real
input and output blocks are read and written in place, with no copies. A
complex window runs as *split planes* (the real parts of a row, then its
imaginary parts) in real work buffers, so that a complex multiply-add is four
real ones on whole SIMD registers. Rows of a window are taken as views that
own nothing (:func:`_row`), as Numba's reference counting of slices made in
inner loops costs as much as their arithmetic. The loops over a window's columns
(and the one-vector kernels' loops over ``alpha``) run in LLVM functions whose
row pointers are ``noalias`` (:func:`_lanewise`), so LLVM vectorises them
without first testing the rows for overlap.

Floating point: each sum over ``sigma`` is a product followed by one FMA per
further term (one rounding each, so never less accurate than a multiply and
an add), spelled out with an ``llvm.fma`` intrinsic rather than left to
LLVM's contraction, and is taken in order of ``sigma``: every kernel, its
SIMD loops and their scalar remainders round alike, so a result does not
depend on the batch size, the window, the thread count or the loop order
of a one-vector kernel. The only fast-math flag is ``contract``;
reassociation, reciprocal tricks and no-NaN/no-Inf assumptions stay off, so
NaN and Inf propagate.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import warnings

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, codegen, types
from numba.core.compiler_lock import global_compiler_lock
from numba.extending import intrinsic, overload
from numba.np.arrayobj import make_array, populate_array

from . import _numba_setup
from ._memory import ALIGN_BYTES

_numba_setup.check_jit_enabled()
_numba_setup.check_layer_in_force()


# A thread's first call of a kind compiles its kernel, or loads it from the cache, holding
# Numba's process-wide compiler lock; a child forked meanwhile would inherit it held by a
# thread it does not have, and hang at its own first call. A fork waits for the lock.
def _fork_after_compiling() -> None:
    global_compiler_lock.acquire()


def _compiling_allowed_after_fork() -> None:
    global_compiler_lock.release()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(
        before=_fork_after_compiling,
        after_in_parent=_compiling_allowed_after_fork,
        after_in_child=_compiling_allowed_after_fork,
    )

# Whether NUMBA_BOUNDSCHECK=1 asked for checked indexing (frozen into the kernels).
_BOUNDSCHECK = bool(numba.config.BOUNDSCHECK)


def _target_features() -> str:
    """The CPU features Numba compiles for, as LLVM spells them (``+avx2,-avx512f,...``):
    ``NUMBA_CPU_FEATURES`` when set, else the host's as Numba reads them."""
    if numba.config.CPU_FEATURES is not None:
        return numba.config.CPU_FEATURES
    return codegen.get_host_cpu_features()


def _has_avx512(features: str) -> bool:
    """Whether ``features`` (:func:`_target_features`) include AVX-512: native mask
    registers, and 32 vector registers where AVX2 has 16."""
    return "+avx512f" in features.split(",")


_AVX512 = _has_avx512(_target_features())

#: Whether the real radix loops fold their tails into masked iterations (:func:`_lanewise_loop`):
#: only where masks are native. LLVM's folded loop masks every iteration, not only the last;
#: with AVX2's masked moves (``vmaskmovpd``) the 4096 butterfly ran 2.5-3.1x slower at 64
#: vectors on AMD Zen 3 (benchmarks/README.md). Numba keys its cache by the CPU features,
#: so kernels compiled either way are never loaded on the other kind of CPU.
FOLD_TAILS = _AVX512

#: Whether three 2x2 factors on real rows run as one radix-8 step (:func:`_radix8_pass`):
#: where its eight rows and their sums fit AVX-512's 32 vector registers (its 48 weights
#: are read as operands, :func:`_lanewise_loop`). With AVX2's 16 they spill, and a radix-4
#: step and a radix-2 step through scratch ran the 512 x 2048 chain 1.2-1.4x faster at 64
#: to 1024 columns on AMD Zen 3 (benchmarks/README.md).
RADIX8_STEP = _AVX512

# Whether stores asked to stream (:func:`_stream_store`) bypass the caches: on x86-64 only,
# where an ``sfence`` (:func:`_store_fence`) orders them; elsewhere they are plain stores.
_STREAMING = platform.machine().lower() in ("x86_64", "amd64")


def _jit(**options):
    """``numba.njit(nogil=True, ...)``, cached outside the package, uncached where it cannot be.

    :func:`_numba_setup.enable_kernel_cache` caches them in ``NUMBA_CACHE_DIR``,
    else the per-user cache folder, else (e.g. a read-only home) a private folder
    under the system's temporary one; it raises ``RuntimeError`` when none of the
    three is writable, and the kernels then compile on first use instead, and one
    ``RuntimeWarning`` says so.
    """

    def decorate(function):
        dispatcher = numba.njit(nogil=True, **options)(function)
        try:
            _numba_setup.enable_kernel_cache(dispatcher)
        except RuntimeError as err:
            if not _cache_warning_issued:
                _warn_no_cache(err)
        return dispatcher

    return decorate


_cache_warning_issued = False


def _warn_no_cache(err: RuntimeError) -> None:
    global _cache_warning_issued
    _cache_warning_issued = True
    warnings.warn(
        f"pydebut: numba cannot cache compiled kernels ({err}); they will be compiled "
        "on first use in every process (set NUMBA_CACHE_DIR to a writable folder to cache them)",
        RuntimeWarning,
        stacklevel=3,
    )


@_jit(inline="always")
def _index(value):  # pragma: no cover
    """``value`` as a plain ``int64``, never a literal or unsigned type.

    Numba compiles a callee once per signature, and types an argument that
    is a constant (``0``) as a literal, or a ``prange`` index as unsigned;
    while it infers a loop's types it even compiles the callee for the
    literal first. Each such variant of a large kernel costs seconds of
    compile time, so the kernels pass offsets and indices through this.
    """
    return np.int64(value)


@_jit(inline="always")
def _at(array, i):  # pragma: no cover
    """``array[i]`` for an index ``i >= 0`` that LLVM cannot prove non-negative.

    Numba wraps a negative signed index around: a compare and a select per
    access, which in a 2x2 group added 16 of each to every radix-4 step's
    set-up. An unsigned index has no wraparound (and is bounds-checked
    alike under ``NUMBA_BOUNDSCHECK=1``).
    """
    return array[np.uint64(i)]


# --- complex arithmetic with fixed roundings ------------------------------------------
#
# A complex window of ``lanes`` columns runs through the batched kernels as a real one of
# ``2 lanes`` columns: the real parts of a row, then its imaginary parts (the *split
# planes*). A complex multiply-add then takes four real ones on whole SIMD registers,
# where LLVM vectorises the interleaved complex layout only in part. Complex arithmetic,
# in the split planes as in the one-vector kernels, is spelled out in FMAs: four for a
# multiply-add (:func:`_plus_times`), two for a lone product (:func:`_times`), so the
# compiler has no contraction left to choose: vector loops, their scalar remainders and
# the one-vector kernels round alike, and a result does not depend on the batch, the
# window or the chunks of a Dask array. The step kernels below have one body for rows
# of the weights' own type and one for split planes; which one runs is decided when
# Numba types the call (the ``*_typed`` overloads).


def _split_planes(value_type: types.Type, row_dtype: types.Type) -> bool:
    """Whether complex ``value_type`` (weights, or the data) meets real rows: split planes."""
    return isinstance(value_type, types.Complex) and not isinstance(row_dtype, types.Complex)


@intrinsic
def _fma(typingctx, a, b, c):  # pragma: no cover - lowered by Numba
    """``a b + c`` rounded once (``llvm.fma``) for three floats of one type."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


@intrinsic
def _stream_store(typingctx, row, lane, value):  # pragma: no cover - lowered by Numba
    """``row[lane] = value`` past the caches (a non-temporal store) where :data:`_STREAMING`.

    For a large output that nothing reads soon: a plain store first reads the
    line it writes into the cache, and evicts other data to make room. Not
    bounds-checked (see :func:`_stream_rows`); a kernel that streams ends
    with :func:`_store_fence`.
    """
    if not (isinstance(row, types.Array) and row.ndim == 1 and row.layout == "C"):
        return None
    if value != row.dtype:
        return None

    def codegen(context, builder, signature, args):
        array = make_array(row)(context, builder, args[0])
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        store = builder.store(args[2], builder.gep(array.data, [index]))
        if _STREAMING:
            flag = builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])
            store.set_metadata("nontemporal", flag)
        return context.get_dummy_value()

    return types.void(row, lane, value), codegen


@intrinsic
def _store_fence(typingctx):  # pragma: no cover - lowered by Numba
    """Order this thread's streamed stores before what follows (``sfence``; nothing elsewhere)."""

    def codegen(context, builder, signature, args):
        if _STREAMING:
            sfence = ir.FunctionType(ir.VoidType(), [])
            builder.call(
                cgutils.get_or_insert_function(builder.module, sfence, "llvm.x86.sse.sfence"), []
            )
        return context.get_dummy_value()

    return types.void(), codegen


def _lanewise(lane_values, updates=False, planes=False, fold_tail=False, read_weights=0):
    """An intrinsic ``each(weights, sources, targets)`` that maps rows lane by lane.

    ``sources`` and ``targets`` are tuples of 1-D C-ordered rows of one
    length and one dtype each (:func:`_rows_of_one_dtype`; without ``planes``
    the sources may mix dtypes, as real weights beside complex data); for each lane
    ``l`` it stores ``lane_values(weights, x)`` into ``targets[0][l],
    targets[1][l], ...``, where ``x = (sources[0][l], sources[1][l], ...)``.
    With ``updates``, ``lane_values(weights, old, x)`` also takes ``old``,
    the targets' values at ``l``. With ``planes``, each real row holds split
    planes (:func:`_split_planes`) and counts as two rows, its real parts
    then its imaginary parts, of half its length; a complex row counts as
    one. ``lane_values`` is a jitted function that returns a tuple.

    The loop runs in an LLVM function whose row pointers are ``noalias``, so
    the target rows must overlap neither each other nor any source row.
    Written as a Numba loop over the same rows, LLVM cannot know that: it
    tests every pair of a loaded and a stored row at each call and, counting
    those tests in its cost model, takes the SIMD loop only from some number
    of lanes on (24 for a radix-4 step in float64, up to 256 for a sweep of
    :func:`lanes_general`), below which the loop runs scalar.

    With ``fold_tail`` LLVM runs the lanes left over after the last whole
    SIMD register as a masked SIMD iteration instead of one lane at a time
    (:func:`_lanewise_loop`), where the CPU has native masks (:data:`FOLD_TAILS`).

    With ``read_weights = n`` the intrinsic is ``each(weights, start,
    sources, targets)``: ``lane_values`` takes the tuple ``weights[start:start
    + n]`` of a 1-D C-ordered array, which the loop reads again for each
    register of lanes (:func:`_lanewise_loop`), for weights too many to stay
    in registers.

    The function the loop lands in is marked to vectorise with 512-bit
    registers where the CPU has them (:func:`_prefer_wide_vectors`).
    """

    def typer(typingctx, weights, start, sources, targets):
        rows = (sources, targets)
        lane_weights = weights
        if read_weights:
            if not (isinstance(weights, types.Array) and weights.ndim == 1):
                return None
            if weights.layout != "C" or not isinstance(start, types.Integer):
                return None
            lane_weights = types.UniTuple(weights.dtype, read_weights)
        mixed = not planes and _rows(sources) and not _rows_of_one_dtype(sources)
        if not (mixed or _rows_of_one_dtype(sources)) or not _rows_of_one_dtype(targets):
            return None
        splits = [2 if planes and isinstance(kind[0].dtype, types.Float) else 1 for kind in rows]
        values = [
            types.UniTuple(kind[0].dtype, split * len(kind))
            for kind, split in zip(rows, splits, strict=True)
        ]
        if mixed:
            values[0] = types.Tuple([row.dtype for row in sources])
        arguments = (lane_weights, values[1], values[0]) if updates else (lane_weights, values[0])
        lane_signature = typingctx.resolve_function_type(
            types.Dispatcher(lane_values), arguments, {}
        )
        if lane_signature is None or lane_signature.return_type != values[1]:
            return None

        def codegen(context, builder, signature, args):
            first, row_values = args[0], args[-2:]
            if read_weights:
                first = _weights_at(context, builder, signature.args[:2], args[:2], read_weights)
            arrays = [
                (make_array(row_type)(context, builder, row), split)
                for kind, value, split in zip(rows, row_values, splits, strict=True)
                for row_type, row in zip(kind, cgutils.unpack_tuple(builder, value), strict=True)
            ]
            counts = []  # lanes of each row
            for array, split in arrays:
                length = cgutils.unpack_tuple(builder, array.shape)[0]
                counts.append(builder.sdiv(length, length.type(split)))
            for count in counts[1:] if _BOUNDSCHECK else []:
                with cgutils.if_unlikely(builder, builder.icmp_signed("!=", count, counts[0])):
                    context.call_conv.return_user_exc(
                        builder, IndexError, ("lanewise rows of different lengths",)
                    )
            pointers = []
            for array, split in arrays:
                pointers.append(array.data)
                if split == 2:
                    pointers.append(builder.gep(array.data, [counts[0]]))
            compiled = context.compile_subroutine(
                builder, lane_values.py_func, lane_signature.as_function()
            )
            loop = _lanewise_loop(
                context,
                builder.module,
                compiled.fndesc,
                lane_signature,
                updates,
                fold_tail,
                read_weights,
            )
            builder.call(loop, [first, *pointers, counts[0]])
            _prefer_wide_vectors(builder.function)
            return context.get_dummy_value()

        arguments = (weights, sources, targets) if start is None else (weights, start, *rows)
        return types.void(*arguments), codegen

    if read_weights:

        @intrinsic
        def each_reading(typingctx, weights, start, sources, targets):
            return typer(typingctx, weights, start, sources, targets)

        return each_reading

    @intrinsic
    def each(typingctx, weights, sources, targets):
        return typer(typingctx, weights, None, sources, targets)

    return each


def _weights_at(context, builder, kinds, values, n):
    """A pointer to ``array[start]``, where ``n`` weights start; ``values = (array, start)``.

    Under ``NUMBA_BOUNDSCHECK=1`` an ``IndexError`` unless ``0 <= start``
    and ``start + n <= len(array)``.
    """
    array = make_array(kinds[0])(context, builder, values[0])
    start = context.cast(builder, values[1], kinds[1], types.intp)
    if _BOUNDSCHECK:
        length = cgutils.unpack_tuple(builder, array.shape)[0]
        outside = builder.or_(
            builder.icmp_signed("<", start, start.type(0)),
            builder.icmp_signed(">", builder.add(start, start.type(n)), length),
        )
        with cgutils.if_unlikely(builder, outside):
            context.call_conv.return_user_exc(
                builder, IndexError, ("lanewise weights out of bounds",)
            )
    return builder.gep(array.data, [start])


#: The LLVM function attribute that lets the loop vectoriser use the widest registers.
PREFER_WIDE_VECTORS = '"prefer-vector-width"="512"'


def _prefer_wide_vectors(function):
    """Let LLVM vectorise ``function``'s loops with 512-bit registers where the CPU has them.

    LLVM tunes its Intel server CPUs (Skylake-X to Emerald Rapids) to prefer
    256-bit vectors even where AVX-512 is present, and AMD's Zen 4 and Zen 5 to
    use 512 bits; a function attribute overrides the tuning for one function,
    and is ignored where 512-bit registers are not legal. On the Emerald Rapids
    machine of benchmarks/README.md ("512-bit vectors on Intel") it made the
    lane loops 1.6-1.9x faster in cache, the 512 x 2048 chain 1.2-1.4x and the
    4096 butterfly 1.1-1.15x faster at 64 and 1024 vectors, and one vector
    through small layers no slower. llvmlite accepts only a fixed list of
    attribute names, so the string attribute goes into the function's set
    directly, as LLVM IR spells it.
    """
    set.add(function.attributes, PREFER_WIDE_VECTORS)


def _inline_call(block, name):
    """Mark the call of ``name`` in ``block`` ``alwaysinline``.

    The lane function must be inlined into the loop for the loop to
    vectorise, but LLVM's inliner weighs a large one by its size (a lane
    function of 16 rows stayed a call per lane); the attribute on the call
    site settles it.
    """
    for instruction in reversed(block.instructions):
        if isinstance(instruction, ir.CallInstr) and instruction.callee.name == name:
            instruction.attributes.add("alwaysinline")
            return
    raise AssertionError(f"no call of {name} to inline")  # pragma: no cover


def _rows(kind: types.Type) -> bool:
    """Whether a Numba type is a non-empty tuple of 1-D C-ordered arrays.

    Read-only and writeable rows may mix (a read-only input beside weights).
    """
    return (
        isinstance(kind, types.BaseTuple)
        and len(kind) > 0
        and all(
            isinstance(row, types.Array) and row.ndim == 1 and row.layout == "C" for row in kind
        )
    )


def _rows_of_one_dtype(kind: types.Type) -> bool:
    """Whether a Numba type is a non-empty tuple of 1-D C-ordered arrays of one dtype."""
    return _rows(kind) and all(row.dtype == kind[0].dtype for row in kind)


#: Bytes of lanes per reading of the weights in a loop that reads them (``read_weights``):
#: one AVX-512 register.
READ_BYTES = 64


def _lanewise_loop(context, module, fndesc, lane_signature, updates, fold_tail, read_weights):
    """The LLVM function ``loop(weights, *noalias rows, count)`` of :func:`_lanewise`.

    One per module, lane function, ``fold_tail`` and ``read_weights``; LLVM
    inlines it (``alwaysinline``), keeping what ``noalias`` says as scoped
    alias metadata.

    With ``fold_tail`` (where :data:`FOLD_TAILS`) the loop carries LLVM's
    tail-folding hint (``llvm.loop.vectorize.predicate.enable``): it is then
    vectorised with masked loads and stores and no scalar remainder, so a
    window whose width is not a multiple of the SIMD width runs its last
    lanes in one masked iteration. A lane's arithmetic is the same either way
    (the FMAs are spelled out), so results do not change. On the real radix-2
    and radix-4 loops this measured 1.06-1.14x faster at 12 columns and
    1.20-1.65x at 15, and within noise where the width is a multiple of the
    SIMD width; on the general sweeps and on split planes it measured up to
    1.9x slower (benchmarks/README.md), so only the real radix loops take it.

    With ``read_weights``, ``weights`` points to the weights, and each
    :data:`READ_BYTES` of lanes first reads them through a pointer LLVM cannot
    prove the same from one register to the next (offset by ``register &
    (count >> 62)``, zero for any array), then runs as one SIMD iteration (a
    loop of one register's lanes, vectorised and not unrolled); the lanes left
    over read them once, as the loop without ``read_weights`` does. Read once
    for all lanes, LLVM broadcasts every weight into a register before the
    loop: the radix-8 step's 48 weights and eight rows overflow even
    AVX-512's 32 registers, and the broadcasts were spilled to the stack and
    reloaded from it, a set-up per sub-problem as long as four iterations of
    the loop. Read per register, each weight is a broadcast operand of its
    multiply or FMA (``{1to8}``, ``{1to16}``), and nothing is spilled. A
    radix-4 step on split planes has 32 real and imaginary parts beside its
    eight planes, each used twice per lane: read per register, they are
    broadcast from the weights there, with 8 stack accesses left in the loop
    where it had 20 and the set-up.

    The loops are built rotated (the test at the end), their hints on the
    branch back: built with the test at the top, both loops of a function
    with ``read_weights`` lost their hints in LLVM's loop rotation.
    """
    flavour = ".folded" * fold_tail + f".reading{read_weights}" * bool(read_weights)
    name = f"pydebut.lanewise{flavour}.{fndesc.mangled_name}"
    if name in module.globals:
        return module.globals[name]
    weight_values = lane_signature.args[0]
    source_values, target_values = lane_signature.args[-1], lane_signature.return_type
    n_sources = len(source_values)
    if read_weights:
        argument_types = [context.get_data_type(weight_values.dtype).as_pointer()]
    else:
        argument_types = [context.get_value_type(weight_values)]
    argument_types += [
        context.get_data_type(value).as_pointer()
        for value in (*source_values.types, *target_values.types)
    ]
    argument_types.append(context.get_value_type(types.intp))
    loop = ir.Function(module, ir.FunctionType(ir.VoidType(), argument_types), name)
    loop.linkage = "internal"
    loop.attributes.add("alwaysinline")
    for row in loop.args[1:-1]:
        row.add_attribute("noalias")
    builder = ir.IRBuilder(loop.append_basic_block("entry"))
    weights, *rows, count = loop.args
    sources, targets = rows[:n_sources], rows[n_sources:]

    def read(pointer):
        loaded = [builder.load(builder.gep(pointer, [count.type(i)])) for i in range(read_weights)]
        return context.make_tuple(builder, weight_values, loaded)

    def lane(lane_weights, index):
        def load(kind, pointers):
            loaded = [builder.load(builder.gep(row, [index])) for row in pointers]
            return context.make_tuple(builder, kind, loaded)

        arguments = [lane_weights, load(source_values, sources)]
        if updates:
            arguments.insert(1, load(target_values, targets))
        _, results = context.call_internal_no_propagate(builder, fndesc, lane_signature, arguments)
        _inline_call(builder.block, fndesc.mangled_name)
        for j, row in enumerate(targets):
            builder.store(builder.extract_value(results, j), builder.gep(row, [index]))

    first_left = count.type(0)
    if read_weights:
        itemsize = context.get_abi_sizeof(context.get_data_type(target_values.types[0]))
        width = READ_BYTES // itemsize
        n_registers = builder.udiv(count, count.type(width))
        opaque_zero = builder.lshr(count, count.type(62))
        one_register = [
            ("llvm.loop.unroll.disable",),
            ("llvm.loop.vectorize.enable", ir.IntType(1)(1)),
            ("llvm.loop.vectorize.width", ir.IntType(32)(width)),
            ("llvm.loop.interleave.count", ir.IntType(32)(1)),
        ]
        with cgutils.for_range(builder, n_registers) as register:
            register_weights = read(
                builder.gep(weights, [builder.and_(register.index, opaque_zero)])
            )
            first = builder.mul(register.index, count.type(width))
            with _rotated_loop(
                module, builder, count.type(0), count.type(width), one_register
            ) as i:
                lane(register_weights, builder.add(first, i))
        first_left = builder.mul(n_registers, count.type(width))
    hints = (
        [("llvm.loop.vectorize.predicate.enable", ir.IntType(1)(1))]
        if fold_tail and FOLD_TAILS
        else []
    )
    with builder.if_then(builder.icmp_signed("<", first_left, count)):
        left_weights = read(weights) if read_weights else weights  # read only if lanes are left
        with _rotated_loop(module, builder, first_left, count, hints) as i:
            lane(left_weights, i)
    builder.ret_void()
    return loop


@contextlib.contextmanager
def _rotated_loop(module, builder, start, stop, hints):
    """A loop over ``index`` from ``start`` to ``stop > start``, its test at the end.

    ``hints`` are LLVM's loop hints, ``(name, *values)`` each, attached to
    the branch back (``llvm.loop``).
    """
    entry = builder.basic_block
    body = builder.append_basic_block("lanes.body")
    end = builder.append_basic_block("lanes.end")
    builder.branch(body)
    builder.position_at_end(body)
    index = builder.phi(start.type, name="lane")
    index.add_incoming(start, entry)
    yield index
    following = builder.add(index, start.type(1), flags=["nsw"])
    index.add_incoming(following, builder.basic_block)
    back = builder.cbranch(builder.icmp_signed("<", following, stop), body, end)
    if hints:
        nodes = [
            module.add_metadata([ir.MetaDataString(module, name), *values])
            for name, *values in hints
        ]
        loop_id = ir.values.MDValue(module, [], str(len(module.metadata)))
        loop_id.operands = (loop_id, *nodes)  # a loop's id refers to itself
        back.set_metadata("llvm.loop", loop_id)
    builder.position_at_end(end)


@_jit(inline="always")
def _times(w, re, im):  # pragma: no cover
    """``w (re + i im)``: real part ``fma(wr, re, -(wi im))``, imaginary ``fma(wr, im, wi re)``."""
    return _fma(w.real, re, -(w.imag * im)), _fma(w.real, im, w.imag * re)


@_jit(inline="always")
def _plus_times(acc_re, acc_im, w, re, im):  # pragma: no cover
    """``acc + w (re + i im)`` as ``(real part, imaginary part)``: four FMAs, no product rounded."""
    return (
        _fma(-w.imag, im, _fma(w.real, re, acc_re)),
        _fma(w.imag, re, _fma(w.real, im, acc_im)),
    )


def _product(w, x):  # pragma: no cover - typed by _product_typed
    """``w x``: for complex numbers with the roundings of :func:`_times`.

    The kernels write each sum over ``sigma`` as ``_madd(... _madd(_product(w0,
    x0), w1, x1) ...)``: for real numbers a product then one FMA per further
    term, for complex numbers :func:`_times` then :func:`_plus_times`; fixed
    either way, so no kernel's result depends on what LLVM chooses to fuse. A
    real ``w`` takes the parts of a complex ``x`` one by one, as real numbers
    (two products, and no ``0 * inf`` of a zero imaginary part of ``w``).
    """


@overload(_product, inline="always", jit_options={"fastmath": {"contract"}})
def _product_typed(w, x):
    if isinstance(w, types.Complex):

        def complex_product(w, x):
            re, im = _times(w, x.real, x.imag)
            return complex(re, im)

        return complex_product
    if isinstance(x, types.Complex):
        return lambda w, x: complex(w * x.real, w * x.imag)
    return lambda w, x: w * x


def _madd(acc, w, x):  # pragma: no cover - typed by _madd_typed
    """``acc + w x`` rounded once (one FMA); for complex numbers as :func:`_plus_times`.

    A real ``w`` and complex ``x`` take one FMA per part.
    """


@overload(_madd, inline="always", jit_options={"fastmath": {"contract"}})
def _madd_typed(acc, w, x):
    if isinstance(w, types.Complex):

        def complex_madd(acc, w, x):
            re, im = _plus_times(acc.real, acc.imag, w, x.real, x.imag)
            return complex(re, im)

        return complex_madd
    if isinstance(x, types.Complex):
        return lambda acc, w, x: complex(_fma(w, x.real, acc.real), _fma(w, x.imag, acc.imag))
    return lambda acc, w, x: _fma(w, x, acc)


@_jit(inline="always")
def _sum2(w0, re0, im0, w1, re1, im1):  # pragma: no cover
    """``w0 (re0 + i im0) + w1 (re1 + i im1)`` as ``(real part, imaginary part)``."""
    product = _times(w0, re0, im0)
    return _plus_times(product[0], product[1], w1, re1, im1)


@_jit(fastmath={"contract"}, inline="always")
def _vector_2x2_small_t(n_blocks, t, w, x, y):  # pragma: no cover
    """One vector through an ``r = s = 2`` factor with small ``t``, by plain indexing.

    Called with a literal ``t`` and inlined, so the compiler sees the strides
    as constants and vectorises across blocks.
    """
    for block in range(n_blocks):
        i0 = 2 * block * t
        w0 = 4 * block * t
        for alpha in range(t):
            a = x[i0 + alpha]
            b = x[i0 + t + alpha]
            w00, w01 = w[w0 + alpha], w[w0 + t + alpha]
            w10, w11 = w[w0 + 2 * t + alpha], w[w0 + 3 * t + alpha]
            y[i0 + alpha] = _madd(_product(w00, a), w01, b)
            y[i0 + t + alpha] = _madd(_product(w10, a), w11, b)


@_jit(inline="always")
def _weighted_radix2_lane(unused, x):  # pragma: no cover
    """``(w00 a + w01 b, w10 a + w11 b)`` for ``x = (w00, w01, w10, w11, a, b)``."""
    w00, w01, w10, w11, a, b = x
    return _madd(_product(w00, a), w01, b), _madd(_product(w10, a), w11, b)


@_jit(inline="always")
def _term_lane(unused, x):  # pragma: no cover
    """The first term of a sum, ``(w x,)`` for ``x = (w, x)``."""
    return (_product(x[0], x[1]),)


@_jit(inline="always")
def _term_onto_lane(unused, old, x):  # pragma: no cover
    """A further term of a sum, ``(old + w x,)`` for ``x = (w, x)``."""
    return (_madd(old[0], x[0], x[1]),)


_each_weighted_radix2 = _lanewise(_weighted_radix2_lane)
_each_term = _lanewise(_term_lane)
_each_term_onto = _lanewise(_term_onto_lane, updates=True)


@_jit(fastmath={"contract"})
def vector_2x2(p, t, weights, w_start, src, dst):  # pragma: no cover
    """``dst = F @ src`` for one vector and a factor with ``r = s = 2``.

    Each pair of inputs is loaded once and both outputs are formed from it:
    ``y0 = W[b,0,0,a] x0 + W[b,0,1,a] x1`` and ``y1 = W[b,1,0,a] x0 + W[b,1,1,a] x1``.
    Loops run over slices (views) whose length Numba knows, which drops its
    negative-index checks and lets the loop over ``alpha`` vectorise.
    """
    n_blocks = p // (2 * t)
    if t <= 8 and (t & (t - 1)) == 0:
        size = 2 * n_blocks * t
        w = weights[w_start : w_start + 2 * size]
        x = src[:size]
        y = dst[:size]
        if t == 1:
            _vector_2x2_small_t(n_blocks, 1, w, x, y)
        elif t == 2:
            _vector_2x2_small_t(n_blocks, 2, w, x, y)
        elif t == 4:
            _vector_2x2_small_t(n_blocks, 4, w, x, y)
        else:
            _vector_2x2_small_t(n_blocks, 8, w, x, y)
        return
    for block in range(n_blocks):
        x0 = src[2 * block * t : (2 * block + 1) * t]
        x1 = src[(2 * block + 1) * t : (2 * block + 2) * t]
        y0 = dst[2 * block * t : (2 * block + 1) * t]
        y1 = dst[(2 * block + 1) * t : (2 * block + 2) * t]
        w = weights[w_start + 4 * block * t : w_start + 4 * (block + 1) * t]
        w00, w01, w10, w11 = w[:t], w[t : 2 * t], w[2 * t : 3 * t], w[3 * t :]
        _each_weighted_radix2((), (w00, w01, w10, w11, x0, x1), (y0, y1))


@_jit(fastmath={"contract"})
def vector_alphas(p, r, s, t, a0, a1, weights, w_start, src, dst):  # pragma: no cover
    """Entries ``alpha`` in ``[a0, a1)`` of ``dst = F @ src`` for one vector and any factor.

    ``y[b, rho, alpha] = sum_sigma W[b, rho, sigma, alpha] * x[b, sigma, alpha]``,
    vectorised along ``alpha``.
    """
    width = a1 - a0
    for block in range(p // (r * t)):
        for rho in range(r):
            out = (block * r + rho) * t + a0
            y = dst[out : out + width]
            w_row = w_start + (block * r + rho) * s * t + a0
            x_row = block * s * t + a0
            w_first, x_first = weights[w_row : w_row + width], src[x_row : x_row + width]
            _each_term((), (w_first, x_first), (y,))
            for sigma in range(1, s):
                w_sigma = weights[w_row + sigma * t : w_row + sigma * t + width]
                x_sigma = src[x_row + sigma * t : x_row + sigma * t + width]
                _each_term_onto((), (w_sigma, x_sigma), (y,))


@_jit(fastmath={"contract"}, inline="always")
def _vector_alphas_small_t(n_blocks, r, s, t, w, x, y):  # pragma: no cover
    """One vector through any factor with small ``t``, by plain indexing.

    Called with a literal ``t`` and inlined, so the loops over ``alpha`` have
    a constant length: per output row, ``t`` sums over ``sigma`` run side by
    side without building a slice per ``(rho, sigma)``.
    """
    for block in range(n_blocks):
        x0 = block * s * t
        for rho in range(r):
            y0 = (block * r + rho) * t
            w0 = y0 * s
            for alpha in range(t):
                y[y0 + alpha] = _product(w[w0 + alpha], x[x0 + alpha])
            for sigma in range(1, s):
                for alpha in range(t):
                    w_sigma, x_sigma = w[w0 + sigma * t + alpha], x[x0 + sigma * t + alpha]
                    y[y0 + alpha] = _madd(y[y0 + alpha], w_sigma, x_sigma)


@_jit(fastmath={"contract"})
def vector_dots(p, r, s, weights, w_start, src, dst):  # pragma: no cover
    """``dst = F @ src`` for one vector and a factor with ``t = 1``: a dot product per row.

    Four rows of a block share each load of ``x[b, sigma]`` and their four sums
    run side by side, so the multiply-adds do not wait on each other (one sum
    at a time is bound by the latency of the multiply-add).
    """
    for block in range(p // r):
        x = src[block * s : (block + 1) * s]
        w = weights[w_start + block * r * s : w_start + (block + 1) * r * s]
        y = dst[block * r : (block + 1) * r]
        rho = 0
        while rho + 4 <= r:
            w0, w1 = w[rho * s : (rho + 1) * s], w[(rho + 1) * s : (rho + 2) * s]
            w2, w3 = w[(rho + 2) * s : (rho + 3) * s], w[(rho + 3) * s : (rho + 4) * s]
            acc0, acc1 = _product(w0[0], x[0]), _product(w1[0], x[0])
            acc2, acc3 = _product(w2[0], x[0]), _product(w3[0], x[0])
            for sigma in range(1, x.shape[0]):
                value = x[sigma]
                acc0 = _madd(acc0, w0[sigma], value)
                acc1 = _madd(acc1, w1[sigma], value)
                acc2 = _madd(acc2, w2[sigma], value)
                acc3 = _madd(acc3, w3[sigma], value)
            y[rho], y[rho + 1], y[rho + 2], y[rho + 3] = acc0, acc1, acc2, acc3
            rho += 4
        while rho < r:
            w0 = w[rho * s : (rho + 1) * s]
            acc0 = _product(w0[0], x[0])
            for sigma in range(1, x.shape[0]):
                acc0 = _madd(acc0, w0[sigma], x[sigma])
            y[rho] = acc0
            rho += 1


@_jit(fastmath={"contract"})
def vector_general(p, r, s, t, weights, w_start, src, dst):  # pragma: no cover
    """``dst = F @ src`` for one vector and any factor."""
    if t == 1:
        vector_dots(p, r, s, weights, w_start, src, dst)
        return
    if t > 16 or (t & (t - 1)) != 0:
        vector_alphas(p, r, s, t, _index(0), t, weights, w_start, src, dst)
        return
    n_blocks = p // (r * t)
    w = weights[w_start : w_start + p * s]
    x = src[: n_blocks * s * t]
    y = dst[:p]
    if t == 2:
        _vector_alphas_small_t(n_blocks, r, s, 2, w, x, y)
    elif t == 4:
        _vector_alphas_small_t(n_blocks, r, s, 4, w, x, y)
    elif t == 8:
        _vector_alphas_small_t(n_blocks, r, s, 8, w, x, y)
    else:
        _vector_alphas_small_t(n_blocks, r, s, 16, w, x, y)


@_jit()
def vector_factor(p, r, s, t, weights, w_start, src, dst):  # pragma: no cover
    """``dst = F @ src`` for one vector; picks the specialised kernel."""
    if r == 2 and s == 2:
        vector_2x2(p, t, weights, w_start, src, dst)
    else:
        vector_general(p, r, s, t, weights, w_start, src, dst)


@_jit()
def largest_dim(specs):  # pragma: no cover
    """The largest ``p`` or ``q`` of a chain's ``(L, 5)`` array of ``(p, q, r, s, t)``."""
    max_dim = 0
    for l in range(specs.shape[0]):  # noqa: E741 - l numbers factors, as in the maths
        max_dim = max(max_dim, specs[l, 0], specs[l, 1])
    return max_dim


@_jit()
def apply_chain_vector(specs, weights, x, out):  # pragma: no cover
    """``out = F_1 ... F_L @ x`` for one contiguous vector.

    Factor ``l``'s weights follow factor ``l - 1``'s in ``weights`` (each
    holds ``p * s`` of them). The first factor reads ``x``, the last writes
    ``out`` and the others alternate between the two rows of a work array
    allocated here (cheaper than passing one in: each argument of a Numba
    call costs a fraction of a microsecond to type-check).
    """
    n_factors = specs.shape[0]
    work = np.empty((2, largest_dim(specs)), dtype=out.dtype)
    src = x
    w_start = _index(0)
    for l in range(n_factors):  # noqa: E741
        p, q, r, s, t = specs[l, 0], specs[l, 1], specs[l, 2], specs[l, 3], specs[l, 4]
        dst = out if l == n_factors - 1 else work[l % 2]
        vector_factor(p, r, s, t, weights, w_start, src[:q], dst[:p])
        src = dst
        w_start += p * s


@_jit()
def apply_chain_columns(specs, weights, x, out):  # pragma: no cover
    """``out = F_1 ... F_L @ x`` for a few columns, each through :func:`apply_chain_vector`.

    ``x`` and ``out`` are 2-D; each column is copied into a contiguous
    vector and back. The result equals the batched kernels' bit for bit
    (both round every product alike), which are slower on windows of a few
    columns.
    """
    column = np.empty(x.shape[0], dtype=x.dtype)
    result = np.empty(out.shape[0], dtype=out.dtype)
    for j in range(x.shape[1]):
        column[:] = x[:, j]
        apply_chain_vector(specs, weights, column, result)
        out[:, j] = result


@_jit()
def _part_bounds(specs, index, part, n_parts):  # pragma: no cover
    """How factor ``index`` is split: ``(by_blocks, lo, hi)`` for part ``part`` of ``n_parts``.

    By blocks ``[lo, hi)`` when the factor has at least ``n_parts`` blocks, else
    along the diagonal index, ``alpha`` in ``[lo, hi)``; a factor with fewer
    blocks and fewer ``alpha`` than parts runs whole in part 0 (the others get
    an empty range).
    """
    p, r, t = specs[index, 0], specs[index, 2], specs[index, 4]
    n_blocks = p // (r * t)
    if n_blocks >= n_parts:
        return True, part * n_blocks // n_parts, (part + 1) * n_blocks // n_parts
    if t >= n_parts:
        return False, part * t // n_parts, (part + 1) * t // n_parts
    return True, 0, n_blocks if part == 0 else 0


@_jit()
def _stays_in_part(specs, index, n_parts):  # pragma: no cover
    """Whether each part of factor ``index + 1`` reads only the rows its part of ``index`` wrote.

    Both factors must be split by blocks, with equal row boundaries between parts.
    """
    for part in range(n_parts):
        by_blocks, _, hi = _part_bounds(specs, index, part, n_parts)
        next_by_blocks, _, next_hi = _part_bounds(specs, index + 1, part, n_parts)
        if not (by_blocks and next_by_blocks):
            return False
        rows_written = hi * specs[index, 2] * specs[index, 4]
        if rows_written != next_hi * specs[index + 1, 3] * specs[index + 1, 4]:
            return False
    return True


@_jit()
def _largest_part(specs, n_parts):  # pragma: no cover
    """The most rows a part of a factor split by blocks reads or writes."""
    largest = 0
    for l in range(specs.shape[0]):  # noqa: E741 - l numbers factors, as in the maths
        for part in range(n_parts):
            by_blocks, lo, hi = _part_bounds(specs, l, part, n_parts)
            if by_blocks:
                size = (hi - lo) * max(specs[l, 2], specs[l, 3]) * specs[l, 4]
                largest = max(largest, size)
    return largest


@_jit()
def _factor_part(
    specs, index, part, n_parts, weights, w_start, src, src_local, dst, dst_local
):  # pragma: no cover
    """Part ``part`` of ``n_parts`` of ``dst = F @ src``, ``F`` the factor ``index``.

    The parts are those of :func:`_part_bounds`.

    With ``src_local`` (``dst_local``) the part's rows of the input (output)
    start at row 0 of ``src`` (``dst``), else at their place in the vector.
    """
    row = specs[index]
    p, q, r, s, t = row[0], row[1], row[2], row[3], row[4]
    by_blocks, lo, hi = _part_bounds(specs, index, part, n_parts)
    if lo == hi:
        return
    if by_blocks:
        x0 = 0 if src_local else lo * s * t
        y0 = 0 if dst_local else lo * r * t
        vector_factor(
            (hi - lo) * r * t, r, s, t, weights, w_start + lo * r * s * t,
            src[x0 : x0 + (hi - lo) * s * t], dst[y0 : y0 + (hi - lo) * r * t],
        )  # fmt: skip
    else:
        vector_alphas(p, r, s, t, lo, hi, weights, w_start, src[:q], dst[:p])


@_jit()
def _weight_starts(specs):  # pragma: no cover
    """Where each factor's weights start in the flat weights, and their total (``(L + 1,)``).

    Kept out of :func:`apply_chain_vector_parallel`: there ``np.zeros`` would
    become a parallel loop of its own, one more thread launch per call.
    """
    n_factors = specs.shape[0]
    w_starts = np.zeros(n_factors + 1, dtype=np.int64)
    for l in range(n_factors):  # noqa: E741 - l numbers factors, as in the maths
        w_starts[l + 1] = w_starts[l] + specs[l, 0] * specs[l, 3]
    return w_starts


@_jit()
def vector_parallel_work(specs, n_parts):  # pragma: no cover
    """Length of the work array that :func:`apply_chain_vector_parallel` takes for ``n_parts``."""
    return 2 * largest_dim(specs) + 2 * n_parts * _largest_part(specs, n_parts)


@_jit(parallel=True)
def apply_chain_vector_parallel(specs, weights, x, out, work, n_parts):  # pragma: no cover
    """:func:`apply_chain_vector` split into ``n_parts`` parts run in parallel, in few phases.

    Each factor is split by blocks, or along ``alpha`` when it has fewer
    blocks than parts (:func:`_part_bounds`). Consecutive factors whose parts
    line up (part ``i`` of the next factor reads exactly the rows part ``i``
    of this one wrote, :func:`_stays_in_part`) form one *phase*: each part
    runs all of the phase's factors on its own rows, in a work array of its
    own, and the parts wait for each other only between phases, whose inputs
    and outputs alternate between two shared rows. A chainable chain splits
    by blocks until its factors have fewer blocks than parts, so two threads
    need two or three phases (one parallel launch each) however long the chain.

    ``work`` is a 1-D array of at least :func:`vector_parallel_work` entries
    of ``out``'s dtype, passed in so that its pages are not fresh at every
    call (fresh pages cost the first touch of each: at ``2**16`` rows that
    made the split kernel 1.6x slower than the one-thread one).
    """
    n_factors = specs.shape[0]
    max_dim = largest_dim(specs)
    part_size = _largest_part(specs, n_parts)
    shared = work[: 2 * max_dim].reshape((2, max_dim))
    private = work[2 * max_dim : 2 * max_dim + 2 * n_parts * part_size].reshape(
        (n_parts, 2, part_size)
    )
    w_starts = _weight_starts(specs)
    first = 0
    phase = 0
    while first < n_factors:
        last = first + 1  # the phase is factors [first, last)
        while last < n_factors and _stays_in_part(specs, last - 1, n_parts):
            last += 1
        src = x if first == 0 else shared[(phase - 1) % 2]
        dst = out if last == n_factors else shared[phase % 2]
        for part in numba.prange(n_parts):
            for l in range(first, last):  # noqa: E741
                step_src = src if l == first else private[part, (l - first - 1) % 2]
                step_dst = dst if l == last - 1 else private[part, (l - first) % 2]
                _factor_part(
                    specs, l, _index(part), n_parts, weights, w_starts[l],
                    step_src, l != first, step_dst, l != last - 1,
                )  # fmt: skip
        first = last
        phase += 1


def _element_address(context, builder, kind, value, row, col, row_type, col_type):
    """LLVM: the byte address of ``array[row, col]`` of a C-ordered 2-D array, and its row stride.

    ``kind`` and ``value`` are the array's Numba type and LLVM value, ``row``
    and ``col`` LLVM integers of Numba types ``row_type`` and ``col_type``.
    Returns ``(parent, address, row_stride)``: the array's struct, an ``i8*``
    and an ``intp``.
    """
    parent = make_array(kind)(context, builder, value)
    row_stride = cgutils.unpack_tuple(builder, parent.strides, 2)[0]
    row, col = (
        context.cast(builder, index, index_type, types.intp)
        for index, index_type in ((row, row_type), (col, col_type))
    )
    offset = builder.add(builder.mul(row, row_stride), builder.mul(col, parent.itemsize))
    address = builder.gep(builder.bitcast(parent.data, cgutils.voidptr_t), [offset])
    return parent, address, row_stride


@intrinsic
def _unowned_row(typingctx, array, row, start, width):  # pragma: no cover - lowered by Numba
    """``array[row, start:start + width]`` of a C-ordered 2-D array, as a view that owns nothing.

    A slice holds a reference to its parent, which Numba counts with two
    atomic operations that it cannot always prune; views made in an inner
    loop then cost as much as the arithmetic. This view has no ``meminfo``:
    it must not outlive ``array``, and it is not bounds-checked (see
    :func:`_row`).
    """
    if not (isinstance(array, types.Array) and array.ndim == 2 and array.layout == "C"):
        return None
    row_type = types.Array(array.dtype, 1, "C")

    def codegen(context, builder, signature, args):
        kind = signature.args
        parent, data, _ = _element_address(
            context, builder, array, args[0], args[1], args[2], kind[1], kind[2]
        )
        count = context.cast(builder, args[3], kind[3], types.intp)
        view = make_array(row_type)(context, builder)
        populate_array(
            view,
            data=builder.bitcast(data, parent.data.type),
            shape=[count],
            strides=[parent.itemsize],
            itemsize=parent.itemsize,
            meminfo=None,
        )
        return view._getvalue()

    return row_type(array, row, start, width), codegen


@_jit(inline="always")
def _row(array, row, start, width):  # pragma: no cover
    """``array[row, start:start + width]`` without reference counting (:func:`_unowned_row`).

    Under ``NUMBA_BOUNDSCHECK=1`` the row and the columns are checked first,
    as indexing would check them.
    """
    if _BOUNDSCHECK and not (
        0 <= row < array.shape[0] and 0 <= start and 0 <= width and start + width <= array.shape[1]
    ):
        raise IndexError("row view out of bounds")
    return _unowned_row(array, row, start, width)


#: Most rows one pass of :func:`lanes_2x2_group` mixes (``2**4``: four factors).
MAX_GROUP_ROWS = 16


@_jit(inline="always")
def _matrix(w, j):  # pragma: no cover
    """The 2x2 matrix ``w[j:j + 4]`` (row major) as a tuple."""
    return _at(w, j), _at(w, j + 1), _at(w, j + 2), _at(w, j + 3)


@_jit(inline="always")
def _radix2_lane(m, x):  # pragma: no cover
    """``M (a, b)`` for ``x = (a, b)`` and the 2x2 matrix ``m`` (row major)."""
    a, b = x
    return _madd(_product(m[0], a), m[1], b), _madd(_product(m[2], a), m[3], b)


@_jit(inline="always")
def _radix2_planes_lane(m, x):  # pragma: no cover
    """:func:`_radix2_lane` of complex ``m`` on split planes: ``x = (a.re, a.im, b.re, b.im)``."""
    a_re, a_im, b_re, b_im = x
    return _sum2(m[0], a_re, a_im, m[1], b_re, b_im) + _sum2(m[2], a_re, a_im, m[3], b_re, b_im)


def _radix4_lane_of(radix2_lane, per_row):
    """A radix-4 step of ``radix2_lane``, whose rows take ``per_row`` values of ``x`` each.

    ``m[:4]`` mixes rows 0 and 1, ``m[4:8]`` rows 2 and 3, then ``m[8:12]``
    the new rows 0 and 2 and ``m[12:]`` the new rows 1 and 3. A real row is
    one value, a row of split planes two (real, imaginary).
    """
    pair = 2 * per_row

    def radix4_lane(m, x):  # pragma: no cover
        u01 = radix2_lane(m[:4], x[:pair])
        u23 = radix2_lane(m[4:8], x[pair:])
        y02 = radix2_lane(m[8:12], u01[:per_row] + u23[:per_row])
        y13 = radix2_lane(m[12:], u01[per_row:] + u23[per_row:])
        return y02[:per_row] + y13[:per_row] + y02[per_row:] + y13[per_row:]

    return _jit(inline="always")(radix4_lane)


_radix4_lane = _radix4_lane_of(_radix2_lane, 1)


@_jit(inline="always")
def _radix8_lane(m, x):  # pragma: no cover
    """Three radix-2 steps on eight rows: radix-4 on rows 0-3 and 4-7, then pairs ``(i, i + 4)``.

    ``m[:16]`` and ``m[16:32]`` are the radix-4 steps' matrices, ``m[32:48]``
    those of the pairs ``(0, 4)`` to ``(3, 7)``: the order in which a radix-4
    step then a radix-2 step take them (:func:`_group_step`), so the same
    products and sums in the same order.
    """
    low = _radix4_lane(m[:16], x[:4])
    high = _radix4_lane(m[16:32], x[4:])
    y0, y4 = _radix2_lane(m[32:36], (low[0], high[0]))
    y1, y5 = _radix2_lane(m[36:40], (low[1], high[1]))
    y2, y6 = _radix2_lane(m[40:44], (low[2], high[2]))
    y3, y7 = _radix2_lane(m[44:48], (low[3], high[3]))
    return y0, y1, y2, y3, y4, y5, y6, y7


_each_radix2 = _lanewise(_radix2_lane, fold_tail=True)
_each_radix2_planes = _lanewise(_radix2_planes_lane, planes=True)
_each_radix4 = _lanewise(_radix4_lane, fold_tail=True)
_each_radix8 = _lanewise(_radix8_lane, fold_tail=True, read_weights=48)
_each_radix4_planes = _lanewise(
    _radix4_lane_of(_radix2_planes_lane, 2), planes=True, read_weights=16
)


def _mix2(w, j, x0, x1, y0, y1):  # pragma: no cover - typed by _mix2_typed
    """``(y0, y1) = M (x0, x1)`` lane by lane, for the 2x2 matrix ``M = w[j:j + 4]`` (row major).

    Rows of real numbers with complex ``w`` hold split planes (:func:`_split_planes`).
    The ``y`` rows overlap neither each other nor the ``x`` rows (:func:`_lanewise`).
    """


def _mix2_same(w, j, x0, x1, y0, y1):  # pragma: no cover
    _each_radix2(_matrix(w, j), (x0, x1), (y0, y1))


def _mix2_planes(w, j, x0, x1, y0, y1):  # pragma: no cover
    _each_radix2_planes(_matrix(w, j), (x0, x1), (y0, y1))


def _mix4(w, j, x0, x1, x2, x3, y0, y1, y2, y3):  # pragma: no cover - typed by _mix4_typed
    """A radix-4 step: 2x2 mixes of ``(x0, x1)``, ``(x2, x3)``, then of ``(0, 2)``, ``(1, 3)``.

    The four 2x2 matrices are ``w[j:j + 16]`` in that order, each row major;
    the four rows of a lane are loaded once and stored once. Rows of real
    numbers with complex ``w`` hold split planes (:func:`_split_planes`).
    The ``y`` rows overlap neither each other nor the ``x`` rows (:func:`_lanewise`).
    """


def _mix4_same(w, j, x0, x1, x2, x3, y0, y1, y2, y3):  # pragma: no cover
    m = _matrix(w, j) + _matrix(w, j + 4) + _matrix(w, j + 8) + _matrix(w, j + 12)
    _each_radix4(m, (x0, x1, x2, x3), (y0, y1, y2, y3))


def _mix4_planes(w, j, x0, x1, x2, x3, y0, y1, y2, y3):  # pragma: no cover
    _each_radix4_planes(w, j, (x0, x1, x2, x3), (y0, y1, y2, y3))


@overload(_mix2, inline="always", jit_options={"fastmath": {"contract"}})
def _mix2_typed(w, j, x0, x1, y0, y1):
    return _mix2_planes if _split_planes(w.dtype, y0.dtype) else _mix2_same


@overload(_mix4, inline="always", jit_options={"fastmath": {"contract"}})
def _mix4_typed(w, j, x0, x1, x2, x3, y0, y1, y2, y3):
    return _mix4_planes if _split_planes(w.dtype, y0.dtype) else _mix4_same


@_jit(fastmath={"contract"}, inline="always")
def _group_step(
    weights,
    j,
    h,
    radix4,
    n,
    rows,
    width,
    src,
    s0,
    src_base,
    src_mapped,
    dst,
    d0,
    dst_base,
    dst_mapped,
):  # pragma: no cover
    """One step of :func:`lanes_2x2_group`: mix bits ``h`` (and ``2h`` if ``radix4``) of ``i < n``.

    Member ``i`` of the sub-problem is row ``src_base + rows[i]`` of ``src``
    if ``src_mapped`` (a window), else row ``src_base + i`` (a scratch
    buffer); likewise in ``dst``. The 2x2 matrices start at ``weights[j]``.
    Returns the index of the next unused weight.
    """
    mixed_bits = 3 * h if radix4 else h  # the bits this step mixes: i0 has them clear
    for i0 in range(n):
        if i0 & mixed_bits:
            continue
        i1 = i0 + h
        a0 = src_base + (_at(rows, i0) if src_mapped else i0)
        a1 = src_base + (_at(rows, i1) if src_mapped else i1)
        b0 = dst_base + (_at(rows, i0) if dst_mapped else i0)
        b1 = dst_base + (_at(rows, i1) if dst_mapped else i1)
        if not radix4:
            _mix2(
                weights, j, _row(src, a0, s0, width), _row(src, a1, s0, width),
                _row(dst, b0, d0, width), _row(dst, b1, d0, width),
            )  # fmt: skip
            j += 4
            continue
        i2, i3 = i0 + 2 * h, i0 + 3 * h
        a2 = src_base + (_at(rows, i2) if src_mapped else i2)
        a3 = src_base + (_at(rows, i3) if src_mapped else i3)
        b2 = dst_base + (_at(rows, i2) if dst_mapped else i2)
        b3 = dst_base + (_at(rows, i3) if dst_mapped else i3)
        _mix4(
            weights, j,
            _row(src, a0, s0, width), _row(src, a1, s0, width),
            _row(src, a2, s0, width), _row(src, a3, s0, width),
            _row(dst, b0, d0, width), _row(dst, b1, d0, width),
            _row(dst, b2, d0, width), _row(dst, b3, d0, width),
        )  # fmt: skip
        j += 16
    return j


@_jit(inline="always")
def _stream_rows(scratch, s_base, dst, d_base, rows, n, d0, width):  # pragma: no cover
    """Rows ``s_base + i`` of ``scratch`` into rows ``d_base + rows[i]`` of ``dst`` (``i < n``).

    Each row's ``width`` columns go to columns ``d0:d0 + width`` of ``dst``
    with :func:`_stream_store`, one row after another, so that each cache
    line of ``dst`` is written whole.
    """
    for i in range(n):
        source = _row(scratch, s_base + i, 0, width)
        target = _row(dst, d_base + rows[i], d0, width)
        for lane in range(width):
            _stream_store(target, lane, source[lane])


@_jit(fastmath={"contract"}, inline="always")
def _group_pass(
    p, k, t, rows, weights, w_start, src, s0, dst, d0, lanes, scratch, part, n_parts, row0,
    stream,
):  # pragma: no cover  # fmt: skip
    """The body of :func:`lanes_2x2_group`, inlined where ``k`` is a constant."""
    n = 1 << k
    per_sub = 2 * k * n
    n_steps = (k + 1) // 2
    n_blocks = p // (n * t)
    for block in range(part * n_blocks // n_parts, (part + 1) * n_blocks // n_parts):
        for alpha in range(t):
            j = w_start + (block * t + alpha) * per_sub
            base = block * n * t + alpha
            # step h reads the window if it is the first, else the scratch half step h - 1
            # wrote; it writes the window if it is the last, else scratch half h % 2. One
            # call site, so the steps' loops are compiled once.
            for step in range(n_steps):
                first, last = step == 0, step == n_steps - 1
                if first:
                    step_src, step_s0, src_base = src, s0, base - row0[0]
                else:
                    step_src, step_s0, src_base = scratch, 0, (step + 1) % 2 * MAX_GROUP_ROWS
                to_dst = last and not stream
                if to_dst:
                    step_dst, step_d0, dst_base = dst, d0, base - row0[1]
                else:
                    step_dst, step_d0, dst_base = scratch, 0, step % 2 * MAX_GROUP_ROWS
                j = _group_step(
                    weights, j, 1 << (2 * step), 2 * step + 1 < k, n, rows, lanes,
                    step_src, step_s0, src_base, first, step_dst, step_d0, dst_base, to_dst,
                )  # fmt: skip
            if stream:
                last_half = (n_steps - 1) % 2 * MAX_GROUP_ROWS
                _stream_rows(scratch, last_half, dst, base - row0[1], rows, n, d0, lanes)


@_jit(inline="always")
def _eight_rows(array, base, rows, mapped, col, lanes):  # pragma: no cover
    """Rows ``base + rows[i]`` (``base + i`` unless ``mapped``) of ``array``, ``i < 8``."""
    return (
        _row(array, base + (_at(rows, 0) if mapped else 0), col, lanes),
        _row(array, base + (_at(rows, 1) if mapped else 1), col, lanes),
        _row(array, base + (_at(rows, 2) if mapped else 2), col, lanes),
        _row(array, base + (_at(rows, 3) if mapped else 3), col, lanes),
        _row(array, base + (_at(rows, 4) if mapped else 4), col, lanes),
        _row(array, base + (_at(rows, 5) if mapped else 5), col, lanes),
        _row(array, base + (_at(rows, 6) if mapped else 6), col, lanes),
        _row(array, base + (_at(rows, 7) if mapped else 7), col, lanes),
    )


@_jit(fastmath={"contract"})
def _radix8_pass(
    p, t, rows, weights, w_start, src, s0, dst, d0, lanes, scratch, part, n_parts, row0, stream
):  # pragma: no cover
    """:func:`_group_pass` of three factors on real rows, as one radix-8 step per sub-problem.

    The eight rows go from ``src`` to ``dst`` (to ``scratch``, then
    :func:`_stream_rows`, with ``stream``) in one sweep over the columns,
    where a radix-4 step and a radix-2 step through scratch loaded and
    stored every row twice and paid the set-up of six mixes, not one.
    Compiled on its own, not inlined into :func:`lanes_2x2_group`: inlined,
    Numba's typing of its tuples took about 30 s more per dtype on a cold
    cache; a call per pass costs nothing measurable.
    """
    n_blocks = p // (8 * t)
    for block in range(part * n_blocks // n_parts, (part + 1) * n_blocks // n_parts):
        for alpha in range(t):
            j = w_start + (block * t + alpha) * 48
            a = block * 8 * t + alpha - row0[0]
            b = block * 8 * t + alpha - row0[1]
            sources = _eight_rows(src, a, rows, True, s0, lanes)
            if stream:
                _each_radix8(weights, j, sources, _eight_rows(scratch, 0, rows, False, 0, lanes))
                _stream_rows(scratch, 0, dst, b, rows, 8, d0, lanes)
            else:
                _each_radix8(weights, j, sources, _eight_rows(dst, b, rows, True, d0, lanes))


def _group_pass_of_k(
    p, k, t, rows, weights, w_start, src, s0, dst, d0, lanes, scratch, part, n_parts, row0,
    stream,
):  # pragma: no cover - typed by _group_pass_of_k_typed  # fmt: skip
    """:func:`_group_pass`; on real rows ``k = 4`` a constant, ``k = 3`` :func:`_radix8_pass`
    where :data:`RADIX8_STEP`."""


def _group_pass_real(
    p, k, t, rows, weights, w_start, src, s0, dst, d0, lanes, scratch, part, n_parts, row0,
    stream,
):  # pragma: no cover  # fmt: skip
    if k == 4:
        _group_pass(
            p, 4, t, rows, weights, w_start, src, s0, dst, d0, lanes, scratch, part, n_parts,
            row0, stream,
        )  # fmt: skip
    elif k == 3 and RADIX8_STEP:
        _radix8_pass(
            p, t, rows, weights, w_start, src, s0, dst, d0, lanes, scratch, part, n_parts,
            row0, stream,
        )  # fmt: skip
    else:
        _group_pass(
            p, k, t, rows, weights, w_start, src, s0, dst, d0, lanes, scratch, part, n_parts,
            row0, stream,
        )  # fmt: skip


@overload(_group_pass_of_k, inline="always", jit_options={"fastmath": {"contract"}})
def _group_pass_of_k_typed(
    p, k, t, rows, weights, w_start, src, s0, dst, d0, lanes, scratch, part, n_parts, row0,
    stream,
):  # fmt: skip
    if _split_planes(weights.dtype, src.dtype):
        return _group_pass.py_func
    return _group_pass_real


@_jit(fastmath={"contract"})
def lanes_2x2_group(
    p, k, t, rows, weights, w_start, src, s0, dst, d0, lanes, scratch, part, n_parts, row0,
    stream,
):  # pragma: no cover  # fmt: skip
    """``k`` consecutive ``p x p`` factors with ``r = s = 2`` in one pass (radix ``2**k``).

    Their ``t`` are ``t, 2t, ..., 2**(k-1) t`` in some order, so together they
    mix ``n = 2**k`` rows at a time: sub-problem ``q = b t + alpha`` holds
    rows ``b n t + alpha + rows[i]`` (``i < n``), where the plan has ordered
    ``rows`` so that the ``j``-th factor applied mixes bit ``j`` of ``i``.
    For each sub-problem the factors run as radix-4 steps (bits ``2j`` and
    ``2j + 1``; a radix-2 step last when ``k`` is odd; three factors on real
    rows as one radix-8 step, :func:`_radix8_pass`, where :data:`RADIX8_STEP`)
    from ``src`` through the two halves of ``scratch``, of shape
    ``(2 MAX_GROUP_ROWS, columns)`` with at least ``lanes`` columns, which stay
    in L1 (128 float64 columns take 32 KiB), to ``dst``: the window is read and
    written once for all ``k`` factors. Sub-problem ``q`` uses
    ``weights[w_start + 2kn q : w_start + 2kn (q + 1)]``, 2x2 matrices in the
    order the steps take them (see :func:`_mix4`). Only part ``part`` of
    ``n_parts`` equal runs of the ``p / (n t)`` blocks is computed; row ``i``
    of that part is row ``i - row0[0]`` of ``src`` and ``i - row0[1]`` of
    ``dst`` (a buffer that holds only the part has its first row at 0).
    Complex weights on real rows take them as split planes, ``lanes / 2``
    columns each. With ``stream`` the last step writes scratch too, and
    :func:`_stream_rows` copies it into ``dst`` past the caches (the caller
    ends with :func:`_store_fence`).

    Four factors is the usual pass (a butterfly's passes take four factors
    each, but the last), and for it ``k`` reaches the body
    (:func:`_group_pass`) of real rows as the constant 4: LLVM then unrolls
    the two radix-4 steps and their mixes and works out the rows' addresses
    once per sub-problem, where a ``k`` known only at run time costs each
    mix about 2 ns more (the 4096 butterfly: 1.28-1.43x faster at 8 and 16
    columns, 1.12x at 64; benchmarks/README.md). The second copy of the body
    costs 3-8 s more compile time per dtype. Split planes keep one body:
    its copy measured 0.91-0.96x (complex128, ``k = 4``). Three factors on
    real rows took longer than four, as a radix-4 step and a radix-2 step
    through scratch; as one radix-8 step the 512 x 2048 chain ran
    1.07-1.14x faster at 8 to 256 float64 columns with AVX-512
    (benchmarks/README.md), where a copy of the body with ``k = 3`` constant had
    measured 0.80-0.95x; with AVX2 it ran 1.2-1.4x slower, so there three
    factors run as two steps.
    """
    _group_pass_of_k(
        p, k, t, rows, weights, w_start, src, s0, dst, d0, lanes, scratch, part, n_parts, row0,
        stream,
    )  # fmt: skip


@_jit(inline="always")
def _dot(w, x):  # pragma: no cover
    """``w[0] x[0] + w[1] x[1] + ...`` in order: a product, then one FMA per further term."""
    acc = _product(w[0], x[0])
    for i in range(1, len(x)):
        acc = _madd(acc, w[i], x[i])
    return acc


@_jit(inline="always")
def _dot_onto(acc, w, x):  # pragma: no cover
    """``acc + w[0] x[0] + w[1] x[1] + ...`` in order, one FMA per term."""
    for i in range(len(x)):
        acc = _madd(acc, w[i], x[i])
    return acc


@_jit(inline="always")
def _dot_planes(w, x):  # pragma: no cover
    """:func:`_dot` of complex ``w`` and split planes ``x = (x0.re, x0.im, x1.re, ...)``."""
    acc = _times(w[0], x[0], x[1])
    for i in range(1, len(w)):
        acc = _plus_times(acc[0], acc[1], w[i], x[2 * i], x[2 * i + 1])
    return acc


@_jit(inline="always")
def _dot_planes_onto(acc, w, x):  # pragma: no cover
    """:func:`_dot_onto` of complex ``w`` and split planes; ``acc = (re, im)``."""
    for i in range(len(w)):
        acc = _plus_times(acc[0], acc[1], w[i], x[2 * i], x[2 * i + 1])
    return acc


@_jit(inline="always")
def _sum_lane(w, x):  # pragma: no cover
    """One output row of a sweep: ``(w[0] . x,)``."""
    return (_dot(w[0], x),)


@_jit(inline="always")
def _sum_onto_lane(w, old, x):  # pragma: no cover
    """:func:`_sum_lane` added to the output row's ``old`` value."""
    return (_dot_onto(old[0], w[0], x),)


@_jit(inline="always")
def _sums_lane(w, x):  # pragma: no cover
    """Two output rows of a sweep from the same inputs: ``(w[0] . x, w[1] . x)``."""
    return _dot(w[0], x), _dot(w[1], x)


@_jit(inline="always")
def _sums_onto_lane(w, old, x):  # pragma: no cover
    """:func:`_sums_lane` added to the output rows' ``old`` values."""
    return _dot_onto(old[0], w[0], x), _dot_onto(old[1], w[1], x)


@_jit(inline="always")
def _sum_planes_lane(w, x):  # pragma: no cover
    """:func:`_sum_lane` on split planes: ``(re, im)`` of the output row."""
    return _dot_planes(w[0], x)


@_jit(inline="always")
def _sum_planes_onto_lane(w, old, x):  # pragma: no cover
    """:func:`_sum_onto_lane` on split planes."""
    return _dot_planes_onto(old, w[0], x)


_each_sum = _lanewise(_sum_lane)
_each_sum_onto = _lanewise(_sum_onto_lane, updates=True)
_each_sums = _lanewise(_sums_lane)
_each_sums_onto = _lanewise(_sums_onto_lane, updates=True)
_each_sum_planes = _lanewise(_sum_planes_lane, planes=True)
_each_sum_planes_onto = _lanewise(_sum_planes_onto_lane, updates=True, planes=True)


def _sweep(y, z, first, w, v, rows):  # pragma: no cover - typed by _sweep_typed
    """``y = w[0] rows[0] + ...`` (if ``first``) or ``y += ...``, lane by lane, over ``rows``.

    Unless ``z`` is None, ``z`` takes the same sum with the weights ``v`` in
    the same sweep, so each input row is loaded once for two output rows
    (real rows; split planes take a sweep per output row). Summing up to four
    rows per sweep writes ``y`` once per four products, not once per
    product; the sum is still taken in order of ``sigma``. Rows of real
    numbers with complex weights hold split planes (:func:`_split_planes`).
    """


def _one_row_sweep(each_first, each_onto):
    """:func:`_sweep` into ``y`` alone (``z`` is None) through a lanewise pair."""

    def sweep(y, z, first, w, v, rows):  # pragma: no cover
        if first:
            each_first((w,), rows, (y,))
        else:
            each_onto((w,), rows, (y,))

    return sweep


_sweep_one = _one_row_sweep(_each_sum, _each_sum_onto)
_sweep_planes = _one_row_sweep(_each_sum_planes, _each_sum_planes_onto)


def _sweep_two(y, z, first, w, v, rows):  # pragma: no cover
    if first:
        _each_sums((w, v), rows, (y, z))
    else:
        _each_sums_onto((w, v), rows, (y, z))


def _sweep_two_planes(y, z, first, w, v, rows):  # pragma: no cover
    """Two output rows on split planes, one sweep each.

    A complex term is four FMAs on two loaded planes, so one sweep for both
    rows would hold 16 broadcast weights, 8 input planes and 4 sums at
    once: on the paper's chains it was 1.2-3.3x slower than two sweeps.
    """
    _sweep(y, None, first, w, w, rows)
    _sweep(z, None, first, v, v, rows)


@overload(_sweep, inline="always", jit_options={"fastmath": {"contract"}})
def _sweep_typed(y, z, first, w, v, rows):
    one = isinstance(z, types.NoneType)
    if _split_planes(w.dtype, y.dtype):
        return _sweep_planes if one else _sweep_two_planes
    return _sweep_one if one else _sweep_two


@_jit(inline="always")
def _term_offsets(t, terms):  # pragma: no cover
    """Offsets of the second to fourth terms of a sweep, ``j t``; unused ones repeat the last."""
    return min(1, terms - 1) * t, min(2, terms - 1) * t, (terms - 1) * t


@_jit(inline="always")
def _terms(weights, w, t, terms):  # pragma: no cover
    """The weights of one sweep of :func:`_sweep`: ``weights[w + j t]``."""
    d1, d2, d3 = _term_offsets(t, terms)
    return _at(weights, w), _at(weights, w + d1), _at(weights, w + d2), _at(weights, w + d3)


@_jit(inline="always")
def _sum_over_sigma(weights, w_row, s, t, src, s0, x_row, lanes, y, z):  # pragma: no cover
    """``y = sum_sigma W[w_row + sigma t] x[x_row + sigma t]``, and ``z`` likewise unless None.

    ``z``'s weights follow ``y``'s by ``s t`` (the next ``rho``); the input
    rows are the same for both. Four values of ``sigma`` per sweep, then two,
    then one.
    """
    sigma = 0
    while sigma < s:
        terms = 4 if s - sigma >= 4 else (2 if s - sigma >= 2 else 1)
        w = _terms(weights, w_row + sigma * t, t, terms)
        v = w if z is None else _terms(weights, w_row + (s + sigma) * t, t, terms)
        row = x_row + sigma * t
        d1, d2, d3 = _term_offsets(t, terms)
        rows = (
            _row(src, row, s0, lanes), _row(src, row + d1, s0, lanes),
            _row(src, row + d2, s0, lanes), _row(src, row + d3, s0, lanes),
        )  # fmt: skip
        if terms == 4:
            _sweep(y, z, sigma == 0, w, v, rows)
        elif terms == 2:
            _sweep(y, z, sigma == 0, w[:2], v[:2], rows[:2])
        else:
            _sweep(y, z, sigma == 0, w[:1], v[:1], rows[:1])
        sigma += terms


@_jit(fastmath={"contract"})
def lanes_general(
    p, r, s, t, weights, w_start, src, s0, dst, d0, lanes, part, n_parts, row0
):  # pragma: no cover
    """``dst = F @ src`` on a window of ``lanes`` columns, for any factor.

    ``y[b, rho, alpha] = sum_sigma W[b, rho, sigma, alpha] * x[b, sigma, alpha]``,
    two output rows (``rho``, ``rho + 1``; the last alone when ``r`` is odd)
    at a time, so they stay in cache while ``sigma`` runs and each input row
    is loaded once for both (once per row on split planes), four (then two,
    then one) values of ``sigma`` per sweep over the rows. Only the blocks
    ``b`` of part ``part`` of ``n_parts`` equal runs are computed; input row
    ``i`` is row ``i - row0[0]`` of ``src``, output row ``i`` row
    ``i - row0[1]`` of ``dst``. Complex weights on real rows take them as
    split planes, ``lanes / 2`` columns each.
    """
    n_blocks = p // (r * t)
    for block in range(part * n_blocks // n_parts, (part + 1) * n_blocks // n_parts):
        x_row = block * s * t - row0[0]
        for rho in range(0, r - 1, 2):
            w_row = w_start + (block * r + rho) * s * t
            out_row = (block * r + rho) * t - row0[1]
            for alpha in range(t):
                y = _row(dst, out_row + alpha, d0, lanes)
                z = _row(dst, out_row + t + alpha, d0, lanes)
                _sum_over_sigma(weights, w_row + alpha, s, t, src, s0, x_row + alpha, lanes, y, z)
        if r % 2 == 1:
            w_row = w_start + (block * r + r - 1) * s * t
            out_row = (block * r + r - 1) * t - row0[1]
            for alpha in range(t):
                y = _row(dst, out_row + alpha, d0, lanes)
                _sum_over_sigma(
                    weights, w_row + alpha, s, t, src, s0, x_row + alpha, lanes, y, None
                )  # fmt: skip


@_jit()
def _group_t(specs, passes, index):  # pragma: no cover
    """The smallest ``t`` of pass ``index``'s factors (its own ``t`` for a lone factor)."""
    l, k = passes[index, 0], passes[index, 1]  # noqa: E741
    t = specs[l, 4]
    for f in range(l + 1, l + k):
        t = min(t, specs[f, 4])
    return t


@_jit()
def _pass_blocks(specs, passes, index):  # pragma: no cover
    """How many independent blocks of rows pass ``index`` maps (``p / (r t)``; ``p / (2^k t)``)."""
    l, k = passes[index, 0], passes[index, 1]  # noqa: E741
    mixed = specs[l, 2] if k == 0 else 1 << k
    return specs[l, 0] // (mixed * _group_t(specs, passes, index))


@_jit()
def phase_end(specs, passes, first, part_rows):  # pragma: no cover
    """The passes ``first:end`` that run part by part, and their number of parts.

    Passes whose blocks split into the same ``n_parts`` equal runs map part
    ``c`` of their input rows (rows ``c q / n_parts`` to ``(c + 1) q /
    n_parts``) to part ``c`` of their output rows, so they can run one part
    after another instead of one pass after another: the part's rows then
    stay in cache from pass to pass. A phase grows while some common number
    of parts keeps each pass's input and output rows of a part within
    ``part_rows``; a pass that joins none runs alone, in one part.
    """
    n_passes = passes.shape[0]
    n_parts = _pass_blocks(specs, passes, first)
    rows_in, rows_out = _pass_rows(specs, passes, first)
    widest = rows_in + rows_out
    end = first + 1
    while end < n_passes:
        common = math.gcd(n_parts, _pass_blocks(specs, passes, end))
        rows_in, rows_out = _pass_rows(specs, passes, end)
        if max(widest, rows_in + rows_out) > part_rows * common:
            break
        n_parts, widest = common, max(widest, rows_in + rows_out)
        end += 1
    return end, n_parts if end > first + 1 else 1


@_jit()
def _pass_rows(specs, passes, index):  # pragma: no cover
    """The rows pass ``index`` reads and the rows it writes."""
    l, k = passes[index, 0], passes[index, 1]  # noqa: E741
    return specs[l, 1], specs[l + max(k, 1) - 1, 0]


@_jit(inline="always")
def lanes_pass(
    specs, passes, rows, weights, index, src, s0, dst, d0, lanes, scratch, part, n_parts, row0,
    stream,
):  # pragma: no cover  # fmt: skip
    """Apply pass ``index`` of a batch plan to part ``part`` of ``n_parts`` of a window.

    ``passes[index]`` is ``(l, k, w_start, r_start)``: factor ``l`` alone with
    its weights at ``w_start`` in their natural layout (``k = 0``), or the
    ``k`` factors from ``l`` as one :func:`lanes_2x2_group` with its packed
    weights at ``w_start`` and its row offsets at ``rows[r_start:]``. The
    window has ``lanes`` columns; the part is a run of the pass's blocks (see
    :func:`phase_end`) whose input row ``i`` is row ``i - row0[0]`` of ``src``
    and output row ``i`` row ``i - row0[1]`` of ``dst``. ``stream`` asks a
    group to write ``dst`` past the caches (:func:`lanes_2x2_group`); a lone
    factor writes it through them.

    Inlined where it is called, once per part of each pass: as a compiled call
    it cost 80-170 ns more per call (a phase of two lone 2x2 factors in 128
    parts at 8 float64 columns took 74-104 us per window, inlined 52-60 us).
    """
    l, k, w_start, r_start = passes[index, 0], passes[index, 1], passes[index, 2], passes[index, 3]  # noqa: E741
    p, r, s, t = specs[l, 0], specs[l, 2], specs[l, 3], specs[l, 4]
    if k == 0:
        lanes_general(
            p, r, s, t, weights, w_start, src, s0, dst, d0, lanes, part, n_parts, row0
        )  # fmt: skip
        return
    lanes_2x2_group(
        p, k, _group_t(specs, passes, index), rows[r_start : r_start + (1 << k)], weights,
        w_start, src, s0, dst, d0, lanes, scratch, part, n_parts, row0, stream,
    )  # fmt: skip


@_jit()
def work_rows(specs, part_rows):  # pragma: no cover
    """Rows of one worker's work buffer (see :func:`apply_chain_matrix`)."""
    max_dim = largest_dim(specs)
    return 2 * max_dim + 2 * min(part_rows, max_dim) + 2 * MAX_GROUP_ROWS


@_jit(inline="always")
def _split_lane(w, x):  # pragma: no cover
    """A complex value as split planes: ``(real part, imaginary part)``."""
    return x[0].real, x[0].imag


@_jit(inline="always")
def _join_lane(w, x):  # pragma: no cover
    """Split planes ``x = (real part, imaginary part)`` as one complex value."""
    return (complex(x[0], x[1]),)


_each_split = _lanewise(_split_lane, planes=True)
_each_join = _lanewise(_join_lane, planes=True)


def _column_major(kind: types.Type) -> bool:
    """Whether a Numba type is a 2-D Fortran-ordered array: its columns, not its rows, are runs."""
    return isinstance(kind, types.Array) and kind.ndim == 2 and kind.layout == "F"


def _tile_side(dtype: types.Type) -> int:
    """Side of the largest square tiles :func:`_transpose` moves: a cache line of ``dtype``.

    8 float64 or 16 float32 elements, so a tile reads and writes whole lines.
    """
    return ALIGN_BYTES * 8 // dtype.bitwidth


#: Side of the tiles where a cache line of float32 is too wide for the block.
_SMALL_TILE = 8


def _tile_shuffles(side: int) -> list[tuple[int, list[int], list[int]]]:
    """The rounds of shuffles that transpose ``side`` vectors of ``side`` elements.

    Round ``b = 1, 2, 4, ...`` pairs vectors ``k`` and ``k + b`` (bit ``b`` of
    ``k`` clear) and swaps the ``b``-element blocks between them: the first
    keeps the blocks at even block positions and takes its partner's, the
    second the partner's odd ones. Returns ``(b, first's mask, second's
    mask)``, indices into the pair's ``2 side`` elements.
    """
    rounds, b = [], 1
    while b < side:
        low = [i if i // b % 2 == 0 else side + i - b for i in range(side)]
        high = [i + b if i // b % 2 == 0 else side + i for i in range(side)]
        rounds.append((b, low, high))
        b *= 2
    return rounds


def _tile_move(side: int):
    """A jitted ``move(source, s_row, s_col, target, t_row, t_col)`` of a square tile.

    ``target[t_row + j, t_col + i] = source[s_row + i, s_col + j]`` for
    ``i, j < side``: the tile is loaded as one vector per row, transposed by
    rounds of shuffles (:func:`_tile_shuffles`) and stored as vectors (LLVM
    makes no shuffles of the same tile written element by element). Both
    arrays are C-ordered 2-D arrays of one real dtype; under
    ``NUMBA_BOUNDSCHECK=1`` the tile's first and last rows are checked first.
    """

    @intrinsic
    def transpose_tile(typingctx, source, s_row, s_col, target, t_row, t_col):
        if not (
            all(
                isinstance(kind, types.Array) and kind.ndim == 2 and kind.layout == "C"
                for kind in (source, target)
            )
            and isinstance(source.dtype, types.Float)
            and target.dtype == source.dtype
        ):
            return None

        def codegen(context, builder, signature, args):
            vector = ir.VectorType(context.get_data_type(source.dtype), side)
            itemsize = context.get_abi_sizeof(vector.element)

            def rows_of(kind, value, row, col, row_type, col_type):
                _, first, stride = _element_address(
                    context, builder, kind, value, row, col, row_type, col_type
                )
                return [
                    builder.bitcast(
                        builder.gep(first, [builder.mul(stride, stride.type(k))]),
                        vector.as_pointer(),
                    )
                    for k in range(side)
                ]

            kind = signature.args
            sources = rows_of(source, args[0], args[1], args[2], kind[1], kind[2])
            targets = rows_of(target, args[3], args[4], args[5], kind[4], kind[5])
            rows = [builder.load(pointer, align=itemsize) for pointer in sources]
            mask_type = ir.VectorType(ir.IntType(32), side)
            for b, low, high in _tile_shuffles(side):
                low, high = ir.Constant(mask_type, low), ir.Constant(mask_type, high)
                mixed = list(rows)
                for k in range(side):
                    if k & b == 0:
                        mixed[k] = builder.shuffle_vector(rows[k], rows[k + b], low)
                        mixed[k + b] = builder.shuffle_vector(rows[k], rows[k + b], high)
                rows = mixed
            for value, pointer in zip(rows, targets, strict=True):
                builder.store(value, pointer, align=itemsize)
            return context.get_dummy_value()

        return types.void(source, s_row, s_col, target, t_row, t_col), codegen

    def move(source, s_row, s_col, target, t_row, t_col):  # pragma: no cover
        if _BOUNDSCHECK:
            _row(source, s_row, s_col, side)
            _row(source, s_row + side - 1, s_col, side)
            _row(target, t_row, t_col, side)
            _row(target, t_row + side - 1, t_col, side)
        transpose_tile(source, s_row, s_col, target, t_row, t_col)

    return _jit(inline="always")(move)


_tile_moves = {
    side: _tile_move(side)
    for side in {_SMALL_TILE, _tile_side(types.float32), _tile_side(types.float64)}
}


def _transpose(source, s_row, s_col, target, t_row, t_col, n_rows, n_cols):  # pragma: no cover
    """``target[t_row + j, t_col + i] = source[s_row + i, s_col + j]``, ``i < n_rows, j < n_cols``.

    Both arrays are C-ordered. Whole tiles, a cache line on a side
    (:func:`_tile_side`), or 8 x 8 where the block is narrower than that, move
    as SIMD vectors (:func:`_tile_move`); the edges element by element.
    """


@overload(_transpose, inline="always")
def _transpose_typed(source, s_row, s_col, target, t_row, t_col, n_rows, n_cols):
    line = _tile_side(source.dtype)
    move_line, move_small = _tile_moves[line], _tile_moves[_SMALL_TILE]

    def transpose(source, s_row, s_col, target, t_row, t_col, n_rows, n_cols):  # pragma: no cover
        side = line if min(n_rows, n_cols) >= line else _SMALL_TILE
        full_rows, full_cols = n_rows - n_rows % side, n_cols - n_cols % side
        for i0 in range(0, full_rows, side):
            for j0 in range(0, full_cols, side):
                if side == line:
                    move_line(source, s_row + i0, s_col + j0, target, t_row + j0, t_col + i0)
                else:
                    move_small(source, s_row + i0, s_col + j0, target, t_row + j0, t_col + i0)
        for i in range(n_rows):
            for j in range(full_cols if i < full_rows else 0, n_cols):
                target[t_row + j, t_col + i] = source[s_row + i, s_col + j]

    return transpose


def _window_source(x, first, lanes, buffer):  # pragma: no cover - typed by _window_source_typed
    """Where the first pass reads columns ``first:first + lanes`` of ``x``: array, column, width.

    ``x`` itself, ``lanes`` wide, when the work buffers hold its dtype; a
    complex ``x`` with real work buffers is copied into ``buffer`` as split
    planes, ``2 lanes`` wide; a column-major real ``x`` is copied into
    ``buffer``'s rows (:func:`_transpose`).
    """


def _window_source_same(x, first, lanes, buffer):  # pragma: no cover
    return x, first, lanes


def _window_source_planes(x, first, lanes, buffer):  # pragma: no cover
    for row in range(x.shape[0]):
        _each_split((), (_row(x, row, first, lanes),), (_row(buffer, row, 0, 2 * lanes),))
    return buffer, _index(0), 2 * lanes


def _window_source_columns(x, first, lanes, buffer):  # pragma: no cover
    _transpose(x.T, first, 0, buffer, 0, 0, lanes, x.shape[0])
    return buffer, _index(0), lanes


@overload(_window_source, inline="always")
def _window_source_typed(x, first, lanes, buffer):
    if _column_major(x):  # a column-major complex x reaches the kernels row-major
        return _window_source_columns if x.dtype == buffer.dtype else None
    return _window_source_planes if _split_planes(x.dtype, buffer.dtype) else _window_source_same


def _window_target(out, first, buffer):  # pragma: no cover - typed by _window_target_typed
    """Where the last pass writes the window at column ``first`` of ``out``: ``(array, column)``.

    ``out`` itself when the work buffers hold its dtype and it is row-major,
    else ``buffer``, which :func:`_window_finish` then copies into ``out``.
    """


@overload(_window_target, inline="always")
def _window_target_typed(out, first, buffer):
    if _split_planes(out.dtype, buffer.dtype) or _column_major(out):
        return lambda out, first, buffer: (buffer, _index(0))
    return lambda out, first, buffer: (out, first)


def _window_finish(out, first, lanes, result):  # pragma: no cover - typed by _window_finish_typed
    """Copy a window's ``result`` into columns ``first:first + lanes`` of ``out``.

    From split planes, or from rows into a column-major ``out``; nothing to
    do when the last pass wrote ``out`` itself.
    """


def _window_finish_planes(out, first, lanes, result):  # pragma: no cover
    for row in range(out.shape[0]):
        _each_join((), (_row(result, row, 0, 2 * lanes),), (_row(out, row, first, lanes),))


def _window_finish_columns(out, first, lanes, result):  # pragma: no cover
    _transpose(result, 0, 0, out.T, first, 0, out.shape[0], lanes)


@overload(_window_finish, inline="always")
def _window_finish_typed(out, first, lanes, result):
    if _column_major(out):
        return _window_finish_columns if out.dtype == result.dtype else None
    if _split_planes(out.dtype, result.dtype):
        return _window_finish_planes
    return lambda out, first, lanes, result: None


@_jit()
def apply_chain_chunks(
    specs, passes, rows, weights, x, out, work, width, part_rows, stream, worker
):  # pragma: no cover
    """The chunks of columns of :func:`apply_chain_matrix` that belong to ``worker``.

    Called directly (``worker = 0`` and one worker) when a block of vectors
    runs on one thread, which saves a parallel launch.
    """
    batch = x.shape[1]
    n_passes = passes.shape[0]
    n_workers = work.shape[0]
    max_dim = largest_dim(specs)
    local_rows = min(part_rows, max_dim)
    buffers = work[worker]
    scratch = buffers[2 * (max_dim + local_rows) :]
    for chunk in range(worker, (batch + width - 1) // width, n_workers):
        first = chunk * width
        lanes = min(width, batch - first)
        # phases alternate between the two buffers of max_dim rows, the first from the second
        phase_src, phase_s0, row_lanes = _window_source(
            x, first, lanes, buffers[max_dim : 2 * max_dim]
        )
        start, phase = _index(0), 0
        while start < n_passes:
            end, n_parts = phase_end(specs, passes, start, part_rows)
            half = phase % 2 * max_dim
            if end == n_passes:
                phase_dst, phase_d0 = _window_target(out, first, buffers[half : half + max_dim])
            else:
                phase_dst, phase_d0 = buffers[half : half + max_dim], _index(0)
            for part in range(n_parts):
                src, s0, src_row0 = phase_src, phase_s0, _index(0)
                for index in range(start, end):
                    if index == end - 1:
                        dst, d0, dst_row0 = phase_dst, phase_d0, _index(0)
                    else:  # a pass inside the phase writes only the part, to a local buffer
                        local = 2 * max_dim + index % 2 * local_rows
                        dst, d0 = buffers[local : local + local_rows], _index(0)
                        dst_row0 = part * _pass_rows(specs, passes, index)[1] // n_parts
                    lanes_pass(
                        specs, passes, rows, weights, index, src, s0, dst, d0, row_lanes,
                        scratch, part, n_parts, (src_row0, dst_row0),
                        stream and index == n_passes - 1,
                    )  # fmt: skip
                    src, s0, src_row0 = dst, d0, dst_row0
            phase_src, phase_s0 = phase_dst, phase_d0
            start = end
            phase += 1
        _window_finish(out, first, lanes, phase_src)
    if stream:
        _store_fence()


@_jit(parallel=True)
def apply_chain_matrix(
    specs, passes, rows, weights, x, out, work, width, part_rows, stream
):  # pragma: no cover
    """``out = F_1 ... F_L @ x`` for ``x`` of shape ``(n, batch)`` (C- or F-contiguous).

    The chain runs as the plan's ``passes`` (see :func:`lanes_pass`). Columns
    are split into chunks of at most ``width``, and worker ``w`` runs the
    whole chain on chunks ``w, w + n_workers, ...``. The passes run in
    *phases* (:func:`phase_end`): consecutive passes whose parts of at most
    ``part_rows`` rows (in and out) match run part by part. ``work`` has
    shape ``(n_workers, work_rows(specs, part_rows), width)``; a worker's
    rows are two buffers of ``max_dim`` rows, between which the phases
    alternate (the first reads its columns of ``x`` in place, the last writes
    its columns of ``out``), two of ``min(part_rows, max_dim)`` rows for the
    passes inside a phase, which hold one part and so stay in cache, and
    ``2 MAX_GROUP_ROWS`` rows of scratch for :func:`lanes_2x2_group`.

    Complex data takes real ``work`` of shape ``(n_workers, rows, 2 width)``:
    each window is copied into the second buffer as split planes, runs the
    chain in them, and is copied from the last phase's buffer into ``out``.
    Real column-major (F-contiguous) ``x`` and ``out`` (the transposes of
    row-major data, :meth:`pydebut.DeButOperator.apply_rows`) go the same way
    without the planes: each window's columns are copied into the second
    buffer's rows and back out of the last phase's (:func:`_transpose`).
    With ``stream`` the last pass, a group, writes ``out`` past the caches
    (for a real row-major ``out``; see :func:`pydebut._batched.streams_output`).
    """
    for worker in numba.prange(work.shape[0]):
        apply_chain_chunks(
            specs, passes, rows, weights, x, out, work, width, part_rows, stream, _index(worker)
        )
