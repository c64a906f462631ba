"""Global consistency of the fleet's poses: pairwise relative poses -> robust SE(2) pose graph ->
a consistency weight per device (the consistency module and outlier attenuation of "Learning to
Communicate and Correct Pose Errors", solved here by robust least squares instead of a learned MRF).

* Every pair of devices (i, j) whose keypoints reach a maximum-consensus correction gives an
  edge: the measured pose of j in i's frame, with an information matrix from the number, the
  residual and the spread of the consensus inliers.
* Every device's reported global pose is a prior with its reported covariance.
* Gauss-Newton with Levenberg damping and iteratively reweighted Cauchy kernels on every factor:
  edges that do not close their cycles get small weights, so a bad pair cannot pull the others.
* The ego's consistent set: devices reachable from the ego through well-weighted edges. A member
  weighs the mean weight of its links into the set. A device outside it weighs the mean Cauchy
  weight of its edges, a failed consensus (enough keypoints near each other under the reported
  poses, yet no agreement) with a member counting as 0; below ``outlier_weight`` it is reported
  as an outlier: its messages disagree with the rest (the paper's outlier case). The ego is the
  reference (weight 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sdk.errors import InputError

from .consensus import (ConsensusConfig, ConsensusResult, keypoints, max_consensus, se2_compose, se2_inverse,
                        wrap_angle)
from .messages import CPM

__all__ = ["Edge", "PoseGraphConfig", "PoseGraphResult", "edge_from_consensus", "solve_pose_graph",
           "pairwise_edges", "consistent_relative_poses"]


@dataclass
class Edge:
    i: int
    j: int
    measurement: np.ndarray
    """(3,) pose of device j in device i's frame."""
    information: np.ndarray
    """(3, 3) inverse covariance of the measurement (x m, y m, heading rad)."""


@dataclass(frozen=True)
class PoseGraphConfig:
    cauchy_scale: float = 3.0
    """Whitened residual norm at which a factor's weight halves."""
    iterations: int = 20
    outlier_weight: float = 0.5
    point_sigma_m: float = 0.3
    """Floor of the per-keypoint noise std used for edge information, m."""
    overlap_distance_m: float = 15.0
    min_overlap_keypoints: int = 8
    """A failed consensus counts against a device only when the two reported positions are within
    overlap_distance_m and both devices have at least min_overlap_keypoints keypoints: close
    devices see the same place and should agree, far ones have nothing to agree on. (Reported
    positions, not keypoint overlap: a device with a gross pose error would evade a test in its
    own wrong frame.)"""
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)


@dataclass
class PoseGraphResult:
    poses: dict[int, np.ndarray]
    """Solved global pose per device id."""
    edge_weights: dict[tuple[int, int], float]
    """Final Cauchy weight of each edge, in [0, 1]."""
    device_weights: dict[int, float]
    """Consistency weight per device in [0, 1] (ego: 1)."""
    outliers: list[int]
    attempts: dict[int, int]
    """Edges + blamed consensus failures per device (the denominator of its weight)."""
    iterations: int
    cost: float

    def relative(self, ego: int, j: int) -> np.ndarray:
        """Solved pose of device j in the ego's frame."""
        return se2_compose(se2_inverse(self.poses[ego]), self.poses[j])


def edge_from_consensus(i: int, j: int, result: ConsensusResult, point_sigma_m: float) -> Edge:
    """An edge from a successful consensus: translation information n / sigma^2, heading
    information n * spread^2 / sigma^2 (a lever of spread metres pins the angle)."""
    sigma2 = max(result.rms_m, point_sigma_m) ** 2
    n = result.inliers
    info = np.diag([n / sigma2, n / sigma2, n * max(result.spread_m, 0.5) ** 2 / sigma2])
    return Edge(i, j, result.relative_pose.copy(), info)


def _whitener(info: np.ndarray) -> np.ndarray:
    """L with L^T L = info."""
    return np.linalg.cholesky(info + 1e-12 * np.eye(3)).T


def solve_pose_graph(priors: dict[int, tuple[np.ndarray, np.ndarray]], edges: list[Edge],
                     config: PoseGraphConfig = PoseGraphConfig()
                     ) -> tuple[dict[int, np.ndarray], dict[tuple[int, int], float], dict[int, float], int, float]:
    """Robust pose-graph solve. priors: device id -> (reported pose (3,), covariance (3, 3)).

    Returns (poses, edge weights, prior weights, iterations, final robust cost)."""
    ids = sorted(priors)
    index = {d: k for k, d in enumerate(ids)}
    for e in edges:
        if e.i not in index or e.j not in index:
            raise InputError(f"solve_pose_graph: edge ({e.i}, {e.j}) names a device without a prior")
    n_dev, n_edge = len(ids), len(edges)
    x = np.stack([np.asarray(priors[d][0], np.float64) for d in ids])              # (D, 3)
    prior_pose = x.copy()
    prior_l = np.stack([_whitener(np.linalg.inv(np.asarray(priors[d][1], np.float64))) for d in ids])
    ei = np.array([index[e.i] for e in edges], np.int64)
    ej = np.array([index[e.j] for e in edges], np.int64)
    z = np.array([e.measurement for e in edges], np.float64).reshape(-1, 3)
    edge_l = np.array([_whitener(e.information) for e in edges]).reshape(-1, 3, 3)
    cz, sz = np.cos(z[:, 2]), np.sin(z[:, 2])
    rz_t = np.stack([np.stack([cz, sz], -1), np.stack([-sz, cz], -1)], 1)          # (E, 2, 2) R_z^T

    def linearize(state: np.ndarray, jacobian: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Whitened residuals (D + E, 3): priors first, then edges; and, if asked, the dense
        Jacobian (3 (D + E), 3 D). Edge error: Z^-1 (X_i^-1 X_j) as (x, y, heading)."""
        rp = state - prior_pose
        rp[:, 2] = wrap_angle(rp[:, 2])
        ti, tj, hi = state[ei, :2], state[ej, :2], state[ei, 2]
        ci, si = np.cos(hi), np.sin(hi)
        ri_t = np.stack([np.stack([ci, si], -1), np.stack([-si, ci], -1)], 1)      # R_i^T
        d = tj - ti
        tij = np.einsum("eab,eb->ea", ri_t, d)
        et = np.einsum("eab,eb->ea", rz_t, tij - z[:, :2])
        eh = wrap_angle(state[ej, 2] - hi - z[:, 2])
        res = np.concatenate([np.einsum("dab,db->da", prior_l, rp),
                              np.einsum("eab,eb->ea", edge_l, np.column_stack([et, eh]))])
        if not jacobian:
            return res, None
        jac = np.zeros((3 * (n_dev + n_edge), 3 * n_dev))
        for k in range(n_dev):
            jac[3 * k:3 * k + 3, 3 * k:3 * k + 3] = prior_l[k]
        a = np.einsum("eab,ebc->eac", rz_t, ri_t)                                  # R_z^T R_i^T
        dri_t = np.stack([np.stack([-si, ci], -1), np.stack([-ci, -si], -1)], 1)   # d R_i^T / d h_i
        dth = np.einsum("eab,ebc,ec->ea", rz_t, dri_t, d)
        blk_i = np.zeros((n_edge, 3, 3))
        blk_j = np.zeros((n_edge, 3, 3))
        blk_i[:, :2, :2], blk_i[:, :2, 2], blk_i[:, 2, 2] = -a, dth, -1.0
        blk_j[:, :2, :2], blk_j[:, 2, 2] = a, 1.0
        blk_i, blk_j = edge_l @ blk_i, edge_l @ blk_j
        for k in range(n_edge):
            row = 3 * (n_dev + k)
            jac[row:row + 3, 3 * ei[k]:3 * ei[k] + 3] += blk_i[k]
            jac[row:row + 3, 3 * ej[k]:3 * ej[k] + 3] += blk_j[k]
        return res, jac

    def kernel_weights(res: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + (res ** 2).sum(axis=1) / config.cauchy_scale ** 2)

    def cost(res: np.ndarray) -> float:
        return float(np.log1p((res ** 2).sum(axis=1) / config.cauchy_scale ** 2).sum())

    lam, it = 1e-3, 0
    res, _ = linearize(x, False)
    for it in range(1, config.iterations + 1):
        # iteratively reweighted Gauss-Newton with Levenberg damping on the Cauchy kernel
        res, jac = linearize(x, True)
        wr = np.repeat(kernel_weights(res), 3)
        h = jac.T @ (wr[:, None] * jac)
        g = jac.T @ (wr * res.ravel())
        step = np.linalg.solve(h + lam * np.diag(np.diag(h) + 1e-9), -g).reshape(-1, 3)
        trial = x + step
        trial_res, _ = linearize(trial, False)
        if cost(trial_res) <= cost(res):
            x, res, lam = trial, trial_res, max(lam / 10, 1e-7)
            if np.abs(step).max() < 1e-7:
                break
        else:
            lam *= 10
    w = kernel_weights(res)
    poses = {d: np.array([x[index[d], 0], x[index[d], 1], float(wrap_angle(x[index[d], 2]))]) for d in ids}
    edge_weights = {(e.i, e.j): float(w[n_dev + k]) for k, e in enumerate(edges)}
    prior_weights = {d: float(w[index[d]]) for d in ids}
    return poses, edge_weights, prior_weights, it, cost(res)


def pairwise_edges(cpms: list[CPM], config: PoseGraphConfig = PoseGraphConfig()
                   ) -> tuple[list[Edge], dict[tuple[int, int], ConsensusResult], list[tuple[int, int]]]:
    """Maximum consensus between every pair of CPMs (i < j by list order).

    Returns (edges of the successful pairs, every consensus result by (sender i, sender j), the
    failed pairs). A failure is listed only for devices close enough to have agreed (see
    ``overlap_distance_m``)."""
    kps = [keypoints(c) for c in cpms]
    globals_ = [c.pose.as_array() for c in cpms]
    edges, results, failed = [], {}, []
    for a in range(len(cpms)):
        for b in range(a + 1, len(cpms)):
            i, j = cpms[a].sender_id, cpms[b].sender_id
            init = se2_compose(se2_inverse(globals_[a]), globals_[b])
            res = max_consensus(kps[a][0], kps[a][1], kps[b][0], kps[b][1], init, config.consensus)
            results[(i, j)] = res
            if res.success:
                edges.append(edge_from_consensus(i, j, res, config.point_sigma_m))
            elif (np.hypot(*init[:2]) <= config.overlap_distance_m
                  and min(len(kps[a][0]), len(kps[b][0])) >= config.min_overlap_keypoints):
                failed.append((i, j))            # they should have agreed: a failure to blame
    return edges, results, failed


def _consistent_set(ego: int, edge_weights: dict[tuple[int, int], float], threshold: float) -> set[int]:
    """Devices reachable from the ego through edges of weight >= threshold."""
    reach, frontier = {ego}, [ego]
    while frontier:
        d = frontier.pop()
        for (i, j), w in edge_weights.items():
            if w >= threshold and d in (i, j):
                other = j if d == i else i
                if other not in reach:
                    reach.add(other)
                    frontier.append(other)
    return reach


def consistent_relative_poses(cpms: list[CPM], ego: int,
                              config: PoseGraphConfig = PoseGraphConfig()) -> PoseGraphResult:
    """The whole consistency step for one frame: pairwise consensus, robust solve, weights.

    cpms: one CPM per device (ego included), sender ids unique. The consistent set is the devices
    reachable from the ego through edges of Cauchy weight >= outlier_weight. A device in it weighs
    the mean weight of those links; a device outside it weighs the mean weight of all its edges
    where each failed consensus with a member of the set counts as a 0-weight edge (the blame for
    a failure goes to the side the fleet does not vouch for), and is reported as an outlier below
    outlier_weight. A device with no edge and no blamed failure is unverified: weight 1."""
    ids = [c.sender_id for c in cpms]
    if len(set(ids)) != len(ids):
        raise InputError(f"consistent_relative_poses: duplicate sender ids {ids}")
    if ego not in ids:
        raise InputError(f"consistent_relative_poses: ego {ego} has no CPM among senders {ids}")
    edges, _, failed = pairwise_edges(cpms, config)
    priors = {c.sender_id: (c.pose.as_array(), np.asarray(c.pose_cov, np.float64)) for c in cpms}
    poses, edge_weights, _, iters, final = solve_pose_graph(priors, edges, config)
    trusted = _consistent_set(ego, edge_weights, config.outlier_weight)
    weights, outliers, attempts = {}, [], {}
    for d in ids:
        mine = {(i, j): w for (i, j), w in edge_weights.items() if d in (i, j)}
        blamed = sum(1 for (i, j) in failed if d in (i, j) and (j if d == i else i) in trusted)
        attempts[d] = len(mine) + blamed
        if d == ego:
            weights[d] = 1.0
        elif d in trusted:
            # vouched for: its weight is how well its links into the consistent set agree
            links = [w for (i, j), w in mine.items() if (j if d == i else i) in trusted and w >= config.outlier_weight]
            weights[d] = float(np.mean(links))
        else:
            weights[d] = float(sum(mine.values()) / attempts[d]) if attempts[d] else 1.0
            if attempts[d] and weights[d] < config.outlier_weight:
                outliers.append(d)
    return PoseGraphResult(poses, edge_weights, weights, outliers, attempts, iters, final)
