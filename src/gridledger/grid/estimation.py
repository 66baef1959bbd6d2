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
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True, eq=False)
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
    h_mat: sp.csr_matrix
    lu: Any = field(repr=False)
    """SuperLU factors of the augmented matrix [[I, W^1/2 H], [H^T W^1/2, 0]] at x^."""

    @property
    def m(self) -> int:
        return len(self.residual)

    def testable(self) -> npt.NDArray[np.bool_]:
        """Rows whose residual carries information: Omega_ii > 1e-3 sigma_i^2.

        Below that a row is (nearly) critical: the others barely check it and an error would
        need > ~200 sigma to reach a normalised residual of 6.
        """
        out: npt.NDArray[np.bool_] = self.omega > 1e-3 * self.sigma**2
        return out

    def normalized_residuals(self) -> FloatArray:
        """r_i / sqrt(Omega_ii); 0 for rows that are not ``testable`` (critical rows)."""
        ok = self.testable()
        out = np.zeros_like(self.residual)
        out[ok] = self.residual[ok] / np.sqrt(self.omega[ok])
        return out

    def prediction_variance(self, h_rows: sp.csr_matrix) -> FloatArray:
        """Variance of h_j(x^) for other measurement rows h_j (p.u.^2): h_j^T G^-1 h_j.

        Solved through the augmented system as ||u||^2 with u = W^1/2 H G^-1 h_j, a sum of
        squares: never negative, and no G^-1 is formed (cond(G) reaches 1e17 with
        accurate flow sensors; the augmented matrix keeps cond(W^1/2 H) ~ 1e9).
        """
        rows = sp.csr_matrix(h_rows)
        dense = rows.toarray()
        out = np.empty(rows.shape[0])
        rhs = np.zeros(self.m + rows.shape[1])
        for j in range(rows.shape[0]):
            rhs[self.m :] = dense[j]
            u = self.lu.solve(rhs)[: self.m]
            out[j] = float(u @ u)
        return out

    def residual_correlation(self, j: int) -> FloatArray:
        """Correlation of every row's residual with row ``j``'s.

        |rho| ~ 1 marks a critical pair: an error in one row is indistinguishable from an
        error in the other.
        """
        s_col = _projector_column(self.lu, self.m, j)
        s_diag = self.omega / self.sigma**2
        denom = np.sqrt(np.maximum(s_diag, 1e-300) * max(float(s_diag[j]), 1e-300))
        out: FloatArray = s_col / denom
        return out

    def chi2_p_value(self) -> float:
        """P(chi2(dof) >= J): small values mean bad data."""
        return float(stats.chi2.sf(self.chi2, self.dof)) if self.dof > 0 else 1.0


def _projector_column(lu: Any, m: int, j: int) -> FloatArray:
    """Column j of S = I - W^1/2 H G^-1 H^T W^1/2 (the residual sensitivity, a projector).

    From the augmented system with right-hand side [e_j; 0]: u + H~ y = e_j, H~^T u = 0, so
    u = S e_j directly, without the cancellation in 1 - (leverage).
    """
    rhs = np.zeros(lu.shape[0])
    rhs[j] = 1.0
    out: FloatArray = np.asarray(lu.solve(rhs)[:m])
    return out


def _factor_augmented(h_scaled: sp.csr_matrix, damping: FloatArray | None) -> Any:
    """SuperLU of [[I, H~], [H~^T, -D]] (Hachtel's augmented form of the normal equations)."""
    m, _n = h_scaled.shape
    low = None if damping is None else sp.diags(-damping)
    a = sp.bmat([[sp.identity(m), h_scaled], [h_scaled.T, low]], format="csc")
    with warnings.catch_warnings():
        warnings.simplefilter("error", spla.MatrixRankWarning)
        return spla.splu(a)


class EstimationDiverged(GridError):
    """The readings are observable but no state fits them (Gauss-Newton and
    Levenberg-Marquardt both fail): gross bad data, e.g. a meter reporting an energy the
    network cannot carry. ``detect_bad_meters`` recovers by leaving readings out."""


def _singular(acn: AcNetwork, mm: MeasurementModel, it: int) -> GridError:
    """A singular step: unobservable rows, or (observable rows) an iterate gone astray."""
    if is_observable(acn, mm):
        return EstimationDiverged(
            f"state estimation diverged: singular gain matrix at iteration {it}"
        )
    return GridError(unobservable_message(acn, mm))


_GN_STEPS = 12


def _gauss_newton(
    acn: AcNetwork,
    mm: MeasurementModel,
    z: FloatArray,
    inv_sigma: FloatArray,
    x_start: FloatArray,
    tol: float,
    max_iter: int,
    *,
    lm: bool,
) -> tuple[FloatArray, int, bool]:
    """Gauss-Newton iterations (``lm``: with Levenberg-Marquardt damping). Returns the best
    state seen, the iterations used, and whether it converged."""
    n_state = len(x_start)
    x = x_start
    r = z - measure(acn, mm, state_to_voltage(acn, x))
    obj = float(np.sum((r * inv_sigma) ** 2))
    best_x, best_obj = x, obj
    lam = 0.0
    for it in range(1, max_iter + 1):
        hm = jacobian(acn, mm, state_to_voltage(acn, x))
        ht = sp.csr_matrix(sp.diags(inv_sigma) @ hm)
        g_diag = np.asarray(ht.multiply(ht).sum(axis=0)).ravel()
        rhs = np.r_[r * inv_sigma, np.zeros(n_state)]
        for _ in range(40):
            damping = None if lam == 0.0 else lam * np.maximum(g_diag, 1e-30)
            try:
                lu = _factor_augmented(ht, damping)
            except (RuntimeError, spla.MatrixRankWarning):
                raise _singular(acn, mm, it) from None
            dx = lu.solve(rhs)[mm.m :]
            if not np.all(np.isfinite(dx)):
                raise _singular(acn, mm, it)
            r_new = z - measure(acn, mm, state_to_voltage(acn, x + dx))
            obj_new = float(np.sum((r_new * inv_sigma) ** 2))
            # Converged when an (at most lightly damped) update moves no predicted reading by
            # more than tol sigmas (a state-space tolerance would be too loose for LV, where
            # dP/dtheta is ~1e2 p.u.); there the objective only jitters in its last digits.
            if lam <= 1e-4 and float(np.max(np.abs(ht @ dx))) < tol:
                return x + dx, it, True
            if not lm or (np.isfinite(obj_new) and obj_new <= obj * (1 + 1e-6)):
                break
            lam = 1e-4 if lam == 0.0 else 10.0 * lam
        else:
            return best_x, it, False
        if not np.isfinite(obj_new):
            return best_x, it, False
        x, r, obj = x + dx, r_new, obj_new
        if obj < best_obj:
            best_x, best_obj = x, obj
        lam = 0.0 if lam <= 1e-4 else lam / 10.0
    return best_x, max_iter, False


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
    """WLS estimate of the state from rows ``mm`` with readings ``z`` and errors ``sigma``.

    Gauss-Newton steps are solved in Hachtel's augmented form, whose conditioning is that
    of W^1/2 H rather than its square (Abur & Gómez Expósito 2004, ch. 3.4); a step that
    does not lower the objective is retried with Levenberg-Marquardt damping. Starts at the
    power flow of the measured injections unless ``v0`` is given.
    Raises ``GridError`` if the rows leave the state unobservable (naming the buses) and its
    subclass ``EstimationDiverged`` if the iteration does not converge.
    """
    st = _structure(acn)
    if mm.m < st.n_state:
        raise GridError(unobservable_message(acn, mm))
    x0 = voltage_to_state(acn, _power_flow_start(acn, mm, z) if v0 is None else v0)
    inv_sigma = 1.0 / sigma
    # Plain Gauss-Newton first: from a good start it converges in a few steps even when a
    # step raises the objective on the way (accurate sensors make the problem stiff). If it
    # has not converged after _GN_STEPS, restart from the best point with Levenberg-Marquardt
    # damping (Marquardt 1963), which only accepts steps that lower the objective.
    x, it, converged = _gauss_newton(acn, mm, z, inv_sigma, x0, tol, min(_GN_STEPS, max_iter), lm=False)
    if not converged:
        x, it2, converged = _gauss_newton(acn, mm, z, inv_sigma, x, tol, max_iter, lm=True)
        it += it2
    if not converged:
        raise EstimationDiverged(f"state estimation did not converge in {it} iterations")
    v = state_to_voltage(acn, x)
    hm = jacobian(acn, mm, v)
    r = z - measure(acn, mm, v)
    ht = sp.csr_matrix(sp.diags(inv_sigma) @ hm)
    try:
        lu = _factor_augmented(ht, None)
    except (RuntimeError, spla.MatrixRankWarning):
        raise _singular(acn, mm, it) from None
    omega = np.zeros(mm.m)
    if with_covariance:
        # One right-hand side at a time: SuperLU's blocked multi-RHS solve goes through
        # multithreaded BLAS, which on a loaded two-core machine is 30x slower, not faster.
        rhs = np.zeros(lu.shape[0])
        for i in range(mm.m):
            rhs[i] = 1.0
            omega[i] = max(float(lu.solve(rhs)[i]), 0.0) * sigma[i] ** 2
            rhs[i] = 0.0
    return WlsResult(
        v=v,
        iterations=it,
        residual=r,
        sigma=sigma,
        chi2=float(np.sum((r * inv_sigma) ** 2)),
        dof=mm.m - st.n_state,
        omega=omega,
        h_mat=hm,
        lu=lu,
    )


def _power_flow_start(acn: AcNetwork, mm: MeasurementModel, z: FloatArray) -> ComplexArray:
    """Start at the power flow of the measured bus injections (0 where none is measured).

    From the no-load state Gauss-Newton needs several overshooting steps to reach a loaded
    feeder; from this point it converges in two or three monotone ones.
    """
    from gridledger.grid._acpf import solve_pf

    s_bus = acn.s_fixed.copy()
    p_rows = (mm.kind == P_INJ) & (mm.sign == 1.0)
    q_rows = (mm.kind == Q_INJ) & (mm.sign == 1.0)
    s_bus[mm.element[p_rows]] = z[p_rows] + 1j * s_bus[mm.element[p_rows]].imag
    s_bus[mm.element[q_rows]] = s_bus[mm.element[q_rows]].real + 1j * z[q_rows]
    sol = solve_pf(acn, s_bus)
    return sol.v if sol.converged else acn.v_start


def _rank_analysis(acn: AcNetwork, mm: MeasurementModel) -> tuple[int, FloatArray]:
    """Numerical rank of H (rows normalised) at the no-load state, and its null space."""
    hm = jacobian(acn, mm, acn.v_start).toarray()
    norms = np.linalg.norm(hm, axis=1)
    hm = hm[norms > 0] / norms[norms > 0, None]
    n = hm.shape[1]
    if hm.shape[0] == 0:
        return 0, np.eye(n)
    _, sv, vt = np.linalg.svd(hm, full_matrices=True)
    tol = max(hm.shape) * np.finfo(float).eps * float(sv[0]) * 1e3
    rank = int(np.sum(sv > tol))
    return rank, vt[rank:]


def unobservable_message(acn: AcNetwork, mm: MeasurementModel) -> str:
    """Name the buses whose voltage the measurement rows cannot determine."""
    st = _structure(acn)
    rank, null = _rank_analysis(acn, mm)
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
    """Numerical observability: H has full column rank (checked by SVD; cache the answer)."""
    st = _structure(acn)
    if mm.m < st.n_state:
        return False
    return _rank_analysis(acn, mm)[0] == st.n_state
