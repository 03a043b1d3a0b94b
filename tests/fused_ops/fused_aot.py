"""Ahead-of-time compile of the fused_ops Triton kernels for an NVIDIA target, no GPU needed (Triton's bundled ptxas).

Catches what the CPU interpreter cannot: code-generation errors (constexpr branches, loop-carried types, dot shapes)
and shared-memory use above the target's limit. Run as a script (``python tests/fused_ops/fused_aot.py 90 --all``)
or through test_fused_aot.py. Must run WITHOUT TRITON_INTERPRET (the caller strips it).
"""
import importlib
import json
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

A = importlib.import_module("fused_ops.kernels.attention")
G = importlib.import_module("fused_ops.kernels.geglu")
GN = importlib.import_module("fused_ops.kernels.group_norm")


def _compile(target, fn, sig, const, **opts):
    sig = dict(sig)
    for k in const:
        sig[k] = "constexpr"
    k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=const), target=target, options=opts)
    return k.metadata.shared


def attention(target, dt, d):
    d1, d2 = A.head_dim_split(d)
    bm, bn, w, st = A._tiles(d, True)
    sig = {"q_ptr": f"*{dt}", "k_ptr": f"*{dt}", "v_ptr": f"*{dt}", "o_ptr": f"*{dt}", "qk_scale": "fp32"}
    sig.update({n: "i32" for n in ["H", "NQ", "NK", "D"]})
    sig.update({f"s{p}{s}": "i32" for p in "qkvo" for s in "bhnd"})
    const = dict(D1=d1, D2=d2, UPCAST=False, PREC="ieee" if dt == "fp32" else "tf32", BLOCK_M=bm, BLOCK_N=bn)
    return _compile(target, A._attn_fwd, sig, const, num_warps=w, num_stages=st)


def group_norm(target, dt, cg, s):
    bc = max(2, triton.next_power_of_2(cg))
    bs = max(2, min(triton.next_power_of_2(s), max(2, 4096 // bc)))
    sig = {"x_ptr": f"*{dt}", "add_ptr": f"*{dt}", "part_ptr": "*fp32"}
    sig.update({n: "i32" for n in ["C", "S", "G", "CG", "CHUNK", "sxn", "sxc", "sxs", "san", "sac", "sas"]})
    s1 = _compile(target, GN._gn_stats, sig, dict(HAS_ADD=True, BLOCK_S=bs, BLOCK_C=bc))
    sig = {"x_ptr": f"*{dt}", "add_ptr": f"*{dt}", "w_ptr": f"*{dt}", "b_ptr": f"*{dt}", "out_ptr": f"*{dt}",
           "part_ptr": "*fp32"}
    sig.update({n: "i32" for n in ["C", "S", "G", "CG", "CHUNK"]})
    sig["eps"] = "fp32"
    sig.update({n: "i32" for n in ["sxn", "sxc", "sxs", "san", "sac", "sas", "son", "soc", "sos"]})
    s2 = _compile(target, GN._gn_apply, sig,
                  dict(HAS_ADD=True, HAS_W=True, HAS_B=True, ACT=1, BLOCK_S=bs, BLOCK_C=bc, BLOCK_P=32))
    return max(s1, s2)


def geglu(target, dt):
    sig = {"h_ptr": f"*{dt}", "out_ptr": f"*{dt}", "D": "i32", "shr": "i32", "sor": "i32"}
    s1 = _compile(target, G._geglu_kernel, sig, dict(BLOCK=1024))
    sig = {"x_ptr": f"*{dt}", "w_ptr": f"*{dt}", "b_ptr": f"*{dt}", "out_ptr": f"*{dt}"}
    sig.update({n: "i32" for n in ["M", "D", "K", "sxm", "sxk", "swn", "swk", "som", "son"]})
    s2 = _compile(target, G._geglu_linear_kernel, sig,
                  dict(HAS_BIAS=True, UPCAST=False, PREC="ieee" if dt == "fp32" else "tf32",
                       BLOCK_M=64, BLOCK_N=64, BLOCK_K=32))
    return max(s1, s2)


def main(argv):
    arch = int(argv[0]) if argv else 90
    full = "--all" in argv
    target = GPUTarget("cuda", arch, 32)
    dts = ["fp16", "bf16", "fp32"] if full else ["fp16", "bf16"]
    heads = [40, 64, 80, 160, 512] if full else [40, 80, 512]
    jobs = [("attention", (dt, d), attention) for dt in dts for d in heads]
    jobs += [("group_norm", (dt, cg, s), group_norm) for dt in dts[:1 if not full else 3]
             for cg, s in [(4, 1 << 20), (40, 4096)]]
    jobs += [("geglu", (dt,), geglu) for dt in dts[:1 if not full else 3]]
    results = []
    for name, args, fn in jobs:
        try:
            results.append({"kernel": name, "args": list(args), "shared": fn(target, *args), "error": None})
        except Exception as exc:  # report every failure, not just the first
            results.append({"kernel": name, "args": list(args), "shared": None, "error": repr(exc)[:800]})
    print(json.dumps(results))
    return 0 if all(r["error"] is None for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
