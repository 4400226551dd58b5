#!/usr/bin/env python3
"""Expected results of the x87 transcendental unit tests (emu-core/src/x87/transcendental.rs).

Exact values with mpmath at 600 bits, rounded to nearest-even to a 64-bit significand.
FSIN/FCOS/FPTAN model the x87 argument reduction: r = x - k*pi66/2 with k = nint(x/(pi66/2))
and pi66 = 0x3243F6A8885A308D3 / 2^64 (pi to 66 bits, Intel SDM Vol. 1 8.3.10).
Run: python3 emu-core/tools/x87_vectors.py
"""
from mpmath import mp, mpf, sin, cos, tan, atan2, log, pi, floor, nint
import mpmath
mp.prec = 600
BIAS=16383
def to80(x):
    """round-to-nearest-even to 64-bit significand"""
    if x == 0: return (0, 0)
    s = 0x8000 if x < 0 else 0
    x = abs(x)
    e = int(floor(mpmath.log(x, 2)))
    # fix e
    while x >= mpf(2)**(e+1): e += 1
    while x < mpf(2)**e: e -= 1
    m = x / mpf(2)**e * mpf(2)**63
    fl = int(floor(m)); frac = m - fl
    if frac > 0.5 or (frac == 0.5 and fl & 1): fl += 1
    if fl == 1 << 64: fl >>= 1; e += 1
    return (s | (e + BIAS), fl)
def val(se, sig):
    s = -1 if se & 0x8000 else 1
    return s * mpf(sig) * mpf(2)**((se & 0x7fff) - BIAS - 63)
PI66 = mpf(0x3243F6A8885A308D3) / mpf(2)**64
def red(x):
    k = int(nint(x / (PI66/2)))
    return x - k*PI66/2, k % 4
def hsin(x):
    r,k = red(x); return [sin(r), cos(r), -sin(r), -cos(r)][k]
def hcos(x):
    r,k = red(x); return [cos(r), -sin(r), -cos(r), sin(r)][k]
def htan(x):
    return hsin(x)/hcos(x)
def fmt(t): return "F80 { se: 0x%04X, sig: 0x%016X }" % t
ins = {'half': to80(mpf('0.5')), 'one': to80(mpf(1)), 'two': to80(mpf(2)), 'three': to80(mpf(3)), 'hundred': to80(mpf(100)),
       'neg075': to80(mpf('-0.75')), 'big': to80(mpf(10)**15), 'tiny': to80(mpf(2)**-40), 'fldpi': (0x4000, 0xC90FDAA22168C235)}
print("// sin")
for n in ['half','one','two','three','hundred','neg075','big','tiny','fldpi']:
    x = val(*ins[n]); print("(%s, %s), // sin(%s)" % (fmt(ins[n]), fmt(to80(hsin(x))), n))
print("// cos")
for n in ['half','one','three','hundred','neg075','big']:
    x = val(*ins[n]); print("(%s, %s), // cos(%s)" % (fmt(ins[n]), fmt(to80(hcos(x))), n))
print("// tan")
for n in ['half','one','neg075','three']:
    x = val(*ins[n]); print("(%s, %s), // tan(%s)" % (fmt(ins[n]), fmt(to80(htan(x))), n))
print("// exact sin(fldpi) =", mpmath.nstr(sin(val(*ins['fldpi'])), 20), " hw model:", mpmath.nstr(hsin(val(*ins['fldpi'])),20))
print("// f2xm1")
for s in ['0.5','-0.5','0.001','1e-10','-0.9999', '0.75']:
    x = to80(mpf(s)); v = val(*x); print("(%s, %s), // 2^%s - 1" % (fmt(x), fmt(to80(mpf(2)**v - 1)), s))
print("// fpatan (y, x)")
for (y,x) in [('1','1'),('1','2'),('-3','-4'),('0.001','-1'),('5','0.5')]:
    Y=to80(mpf(y)); X=to80(mpf(x)); r = atan2(val(*Y), val(*X))
    print("(%s, %s, %s), // atan2(%s, %s)" % (fmt(Y), fmt(X), fmt(to80(r)), y, x))
print("// fyl2x (y, x)")
for (y,x) in [('1','10'),('2.5','0.3'),('-1','3'),('1','1.0000001')]:
    Y=to80(mpf(y)); X=to80(mpf(x)); r = val(*Y)*log(val(*X),2)
    print("(%s, %s, %s), // %s * log2(%s)" % (fmt(Y), fmt(X), fmt(to80(r)), y, x))
print("// fyl2xp1 (y, x)")
for (y,x) in [('1','0.25'),('1','1e-6'),('3','-0.2')]:
    Y=to80(mpf(y)); X=to80(mpf(x)); r = val(*Y)*log(1+val(*X),2)
    print("(%s, %s, %s), // %s * log2(1 + %s)" % (fmt(Y), fmt(X), fmt(to80(r)), y, x))
print("// sqrt2", fmt(to80(mpmath.sqrt(2))))
