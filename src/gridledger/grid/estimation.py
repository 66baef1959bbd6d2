"""AC weighted-least-squares state estimation with bad-data statistics.

Textbook WLS (Abur & Gómez Expósito, *Power System State Estimation*, 2004, ch. 2 and 5):
state x = (voltage angles except the reference, all voltage magnitudes); Gauss-Newton on
J(x) = sum ((z - h(x)) / sigma)^2 with gain G = H^T W H. After convergence:

* chi-square test: J(x^) ~ chi2(m - n) without bad data (ch. 5.4);
* normalised residuals r_N,i = r_i / sqrt(Omega_ii) with Omega = R - H G^-1 H^T; the largest
  normalised residual identifies a single bad measurement (ch. 5.7).

Own implementation rather than ``pandapower.estimation`` because detection needs H, G^-1 and
Omega, and because it is several times faster (benchmarks/grid.md); tests check that both
estimators agree on the same measurements.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy import stats

from gridledger.errors import GridError
from gridledger.grid._acpf import AcNetwork

FloatArray = npt.NDArray[np.float64]
ComplexArray = npt.NDArray[np.complex128]
IntArray = npt.NDArray[np.int64]

# Measurement kinds (rows of the "all quantities" vector, see _all_values).
P_INJ, Q_INJ, VM, P_FROM, Q_FROM, P_TO, Q_TO = range(7)


@dataclass(frozen=True, eq=False)
class MeasurementModel:
    """Which quantity each measurement row observes: ``sign * quantity[kind][element]``."""

    kind: IntArray
    element: IntArray
    """Internal bus index for P_INJ/Q_INJ/VM, internal branch row for flows."""
    sign: FloatArray
    labels: tuple[str, ...]

    @property
    def m(self) -> int:
        return len(self.kind)

    def subset(self, rows: npt.ArrayLike) -> MeasurementModel:
        idx = np.asarray(rows, dtype=np.int64)
        return MeasurementModel(
            kind=self.kind[idx],
            element=self.element[idx],
            sign=self.sign[idx],
            labels=tuple(self.labels[i] for i in idx),
        )


class _Structure:
    """Network matrices the measurement functions need (built once per network)."""

    def __init__(self, acn: AcNetwork) -> None:
        n = acn.n_bus
        nbr = acn.yf.shape[0]
        self.n = n
        self.nbr = nbr
        self.ref = int(acn.ref[0])
        self.non_ref = np.array([k for k in range(n) if k != self.ref], dtype=np.int64)
        self.n_state = len(self.non_ref) + n
        self.cf = sp.csr_matrix((np.ones(nbr), (np.arange(nbr), acn.f_bus)), shape=(nbr, n))
        self.ct = sp.csr_matrix((np.ones(nbr), (np.arange(nbr), acn.t_bus)), shape=(nbr, n))
        self.offsets = np.cumsum([0, n, n, n, nbr, nbr, nbr, nbr])


_STRUCT: dict[int, tuple[AcNetwork, _Structure]] = {}


def _structure(acn: AcNetwork) -> _Structure:
    hit = _STRUCT.get(id(acn))
    if hit is None or hit[0] is not acn:
        hit = (acn, _Structure(acn))
        _STRUCT[id(acn)] = hit
    return hit[1]


def state_to_voltage(acn: AcNetwork, x: FloatArray) -> ComplexArray:
    """State vector (angles except reference, magnitudes) -> complex voltages."""
    st = _structure(acn)
    va = np.full(st.n, np.angle(acn.v_start[st.ref]))
    va[st.non_ref] = x[: len(st.non_ref)]
    vm = x[len(st.non_ref) :]
    out: ComplexArray = np.asarray(vm * np.exp(1j * va), dtype=np.complex128)
    return out


def voltage_to_state(acn: AcNetwork, v: ComplexArray) -> FloatArray:
    """Complex voltages -> state vector."""
    st = _structure(acn)
    out: FloatArray = np.asarray(np.r_[np.angle(v)[st.non_ref], np.abs(v)], dtype=np.float64)
    return out


def _all_values(acn: AcNetwork, v: ComplexArray) -> FloatArray:
    s = v * np.conj(acn.ybus @ v)
    sf = v[acn.f_bus] * np.conj(acn.yf @ v)
    stt = v[acn.t_bus] * np.conj(acn.yt @ v)
    out: FloatArray = np.asarray(
        np.r_[s.real, s.imag, np.abs(v), sf.real, sf.imag, stt.real, stt.imag], dtype=np.float64
    )
    return out


def measure(acn: AcNetwork, mm: MeasurementModel, v: ComplexArray) -> FloatArray:
    """h(V): the value every measurement row would read at voltages ``v`` (p.u.)."""
    st = _structure(acn)
    out: FloatArray = mm.sign * _all_values(acn, v)[st.offsets[mm.kind] + mm.element]
    return out


def jacobian(acn: AcNetwork, mm: MeasurementModel, v: ComplexArray) -> sp.csr_matrix:
    """H = dh/dx (m x n_state, sparse), MATPOWER's dSbus_dV / dSbr_dV formulas."""
    st = _structure(acn)
    vn = v / np.abs(v)
    ibus = acn.ybus @ v
    dv = sp.diags(v)
    dvn = sp.diags(vn)
    ds_dvm = dv @ (acn.ybus @ dvn).conj() + sp.diags(np.conj(ibus) * vn)
    ds_dva = 1j * dv @ (sp.diags(ibus) - acn.ybus @ dv).conj()

    def branch(y: sp.csr_matrix, c: sp.csr_matrix, bus: IntArray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        i = y @ v
        vb = sp.diags(v[bus])
        di = sp.diags(np.conj(i))
        d_va = 1j * (di @ c @ dv - vb @ (y @ dv).conj())
        d_vm = vb @ (y @ dvn).conj() + di @ c @ dvn
        return sp.csr_matrix(d_va), sp.csr_matrix(d_vm)

    need_f = bool(np.any((mm.kind == P_FROM) | (mm.kind == Q_FROM)))
    need_t = bool(np.any((mm.kind == P_TO) | (mm.kind == Q_TO)))
    zero_br = sp.csr_matrix((st.nbr, st.n))
    dsf_va, dsf_vm = branch(acn.yf, st.cf, acn.f_bus) if need_f else (zero_br, zero_br)
    dst_va, dst_vm = branch(acn.yt, st.ct, acn.t_bus) if need_t else (zero_br, zero_br)
    eye = sp.identity(st.n, format="csr")
    zero_bus = sp.csr_matrix((st.n, st.n))
    big_va = sp.vstack(
        [ds_dva.real, ds_dva.imag, zero_bus, dsf_va.real, dsf_va.imag, dst_va.real, dst_va.imag],
        format="csr",
    )
    big_vm = sp.vstack(
        [ds_dvm.real, ds_dvm.imag, eye, dsf_vm.real, dsf_vm.imag, dst_vm.real, dst_vm.imag],
        format="csr",
    )
    rows = st.offsets[mm.kind] + mm.element
    h = sp.hstack([big_va[rows][:, st.non_ref], big_vm[rows]], format="csr")
    return sp.csr_matrix(sp.diags(mm.sign) @ h)


@dataclass(frozen=True)
class WlsResult:
    """A converged WLS estimate with its bad-data statistics."""

    v: ComplexArray
    iterations: int
    residual: FloatArray
    """z - h(x^) per row (p.u.)."""
    sigma: FloatArray
    chi2: float
    dof: int
    omega: FloatArray
    """Residual variances Omega_ii (p.u.^2); ~0 for critical measurements."""
    state_cov: FloatArray
    """G^-1, the covariance of the state estimate."""
    h_mat: sp.csr_matrix

    def testable(self) -> npt.NDArray[np.bool_]:
        """Rows whose residual carries information: Omega_ii > 1e-3 sigma_i^2.

        Below that a row is (nearly) critical: the others barely check it, an error would
        need > ~200 sigma to show, and Omega_ii = sigma^2 - H G^-1 H^T is then a difference of
        nearly equal numbers that double precision cannot resolve.
        """
        out: npt.NDArray[np.bool_] = self.omega > 1e-3 * self.sigma**2
        return out

    def normalized_residuals(self) -> FloatArray:
        """r_i / sqrt(Omega_ii); 0 for rows that are not ``testable`` (critical rows)."""
        ok = self.testable()
        out = np.zeros_like(self.residual)
        out[ok] = self.residual[ok] / np.sqrt(self.omega[ok])
        return out

    def residual_correlation(self, j: int) -> FloatArray:
        """Correlation of every row's residual with row ``j``'s (Omega_ij / sqrt(Omega_ii Omega_jj)).

        |rho| ~ 1 marks a critical pair: an error in one row is indistinguishable from an
        error in the other.
        """
        hj = self.h_mat[j].toarray().ravel()
        col = -np.asarray(self.h_mat @ (self.state_cov @ hj)).ravel()
        col[j] += self.sigma[j] ** 2
        denom = np.sqrt(np.maximum(self.omega, 1e-300) * max(float(self.omega[j]), 1e-300))
        out: FloatArray = col / denom
        return out

    def chi2_p_value(self) -> float:
        """P(chi2(dof) >= J): small values mean bad data."""
        return float(stats.chi2.sf(self.chi2, self.dof)) if self.dof > 0 else 1.0


def estimate_state(
    acn: AcNetwork,
    mm: MeasurementModel,
    z: FloatArray,
    sigma: FloatArray,
    *,
    v0: ComplexArray | None = None,
    tol: float = 1e-4,
    max_iter: int = 30,
    with_covariance: bool = True,
) -> WlsResult:
    """Gauss-Newton WLS. Raises ``GridError`` if the rows leave the state unobservable."""
    st = _structure(acn)
    if mm.m < st.n_state:
        raise GridError(unobservable_message(acn, mm))
    x = voltage_to_state(acn, acn.v_start if v0 is None else v0)
    w = 1.0 / sigma**2
    it = 0
    lu = None
    r = z - measure(acn, mm, state_to_voltage(acn, x))
    obj = float(np.sum(w * r**2))
    for it in range(1, max_iter + 1):
        v = state_to_voltage(acn, x)
        hm = jacobian(acn, mm, v)
        g = sp.csc_matrix(hm.T @ sp.diags(w) @ hm)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", spla.MatrixRankWarning)
                lu = spla.splu(g)
                dx = lu.solve(hm.T @ (w * r))
        except (RuntimeError, spla.MatrixRankWarning):
            raise GridError(unobservable_message(acn, mm)) from None
        if not np.all(np.isfinite(dx)):
            raise GridError(unobservable_message(acn, mm))
        # Backtracking: weakly observable sets (pseudo-measurements only) make the full
        # Gauss-Newton step overshoot; halve it until the objective decreases.
        step = 1.0
        for _ in range(30):
            r_new = z - measure(acn, mm, state_to_voltage(acn, x + step * dx))
            obj_new = float(np.sum(w * r_new**2))
            if np.isfinite(obj_new) and obj_new <= obj * (1 + 1e-12) + 1e-12:
                break
            step *= 0.5
        dx = step * dx
        x = x + dx
        r, obj = r_new, obj_new
        # Converged when the update moves no predicted reading by more than tol sigmas
        # (a state-space tolerance would be too loose for LV, where dP/dtheta is ~1e2 p.u.).
        if np.max(np.abs(hm @ dx) / sigma) < tol:
            break
    else:
        raise GridError(f"state estimation did not converge in {max_iter} iterations")
    v = state_to_voltage(acn, x)
    hm = jacobian(acn, mm, v)
    r = z - measure(acn, mm, v)
    chi2 = float(np.sum((r / sigma) ** 2))
    dof = mm.m - st.n_state
    if with_covariance:
        g = sp.csc_matrix(hm.T @ sp.diags(w) @ hm)
        lu = spla.splu(g)
        cov = np.empty((st.n_state, st.n_state))
        e = np.zeros(st.n_state)
        for j in range(st.n_state):
            e[j] = 1.0
            cov[:, j] = lu.solve(e)
            e[j] = 0.0
        hc = np.asarray(hm @ cov)
        omega = sigma**2 - np.asarray(hm.multiply(hc).sum(axis=1)).ravel()
    else:
        cov = np.zeros((0, 0))
        omega = np.zeros(mm.m)
    return WlsResult(
        v=v,
        iterations=it,
        residual=r,
        sigma=sigma,
        chi2=chi2,
        dof=dof,
        omega=np.maximum(omega, 0.0),
        state_cov=cov,
        h_mat=hm,
    )


def unobservable_message(acn: AcNetwork, mm: MeasurementModel) -> str:
    """Name the buses whose voltage the measurement rows cannot determine."""
    st = _structure(acn)
    hm = jacobian(acn, mm, acn.v_start).toarray()
    if hm.shape[0] == 0:
        return "measurement set is unobservable: no measurements"
    _, sv, vt = np.linalg.svd(hm, full_matrices=True)
    tol = max(hm.shape) * np.finfo(float).eps * (sv[0] if len(sv) else 1.0) * 1e3
    rank = int(np.sum(sv > tol))
    null = vt[rank:]
    weight = np.sum(null**2, axis=0)
    nva = len(st.non_ref)
    bus_weight = np.zeros(st.n)
    bus_weight[st.non_ref] += weight[:nva]
    bus_weight += weight[nva:]
    buses = [acn.bus_label(int(k)) for k in np.argsort(-bus_weight) if bus_weight[k] > 1e-6]
    return (
        f"measurement set is unobservable: {st.n_state - rank} of {st.n_state} state variables "
        f"cannot be estimated; affected: {', '.join(buses[:8])}"
        + (" ..." if len(buses) > 8 else "")
        + " (add P/Q meters or flow sensors there)"
    )


def is_observable(acn: AcNetwork, mm: MeasurementModel) -> bool:
    """Numerical observability of the rows at the network's no-load state."""
    st = _structure(acn)
    if mm.m < st.n_state:
        return False
    hm = jacobian(acn, mm, acn.v_start)
    g = sp.csc_matrix(hm.T @ hm)
    # Scale to unit diagonal so the pivot test is about structure, not units.
    d = np.sqrt(np.maximum(g.diagonal(), 1e-300))
    g = sp.csc_matrix(sp.diags(1 / d) @ g @ sp.diags(1 / d))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", spla.MatrixRankWarning)
            lu = spla.splu(g)
    except (RuntimeError, spla.MatrixRankWarning):
        return False
    piv = np.abs(lu.U.diagonal())
    return bool(piv.min() > 1e-10 * piv.max())
