"""The demo head's geometry, bpy-free (numpy): a stylised head (skull, jaw and chin, nose, brow
ridge, ears, hair cap, lips around a real mouth opening with teeth and a dark mouth cavity behind),
eyelids that close, eyeballs, a neck and shoulders, the deltas of 43 ARKit-named shape keys, the
skinning weights and the bones. ``blender/demo_head.py`` turns them into Blender objects.

Coordinates are head-local metres (origin between the ears, the face looks down -Y, +X is the
character's left, as Blender's ``.L`` convention), placed at ``HEAD_CENTER`` in the world.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .arkit import ARKIT_NAMES

HEAD_CENTER = np.array([0.0, 0.0, 1.6])
AX, AY, AZ = 0.074, 0.094, 0.108  # skull semi-axes: half width, half depth, half height
Z_MOUTH = -0.055  # the mouth line
BROW_Z = 0.029  # the eyebrows' centre line
U_MOUTH = 0.36  # the mouth's half width as an azimuth angle (about 2.2 cm)
EYE_X, EYE_Z, EYE_R = 0.031, 0.006, 0.0135
HINGE = np.array([0.0, 0.012, -0.006])  # the jaw's rotation axis (along x) passes here
JAW_OPEN_ANGLE = 0.42  # radians at jawOpen = 1: a wide open mouth

# skin, lips, mouth, teeth, hair, lash, cloth, sclera, iris, pupil: (name, RGB)
MATERIALS = (
    ("Skin", (0.80, 0.56, 0.45)),
    ("Lips", (0.70, 0.30, 0.30)),
    ("Mouth", (0.06, 0.015, 0.02)),
    ("Teeth", (0.92, 0.90, 0.82)),
    ("Hair", (0.16, 0.10, 0.06)),
    ("Lash", (0.04, 0.025, 0.02)),
    ("Cloth", (0.18, 0.28, 0.42)),
    ("Sclera", (0.93, 0.92, 0.88)),
    ("Iris", (0.22, 0.42, 0.60)),
    ("Pupil", (0.01, 0.01, 0.012)),
)
SKIN, LIPS, MOUTH, TEETH, HAIR, LASH, CLOTH, SCLERA, IRIS, PUPIL = range(len(MATERIALS))

# part ids of the head mesh's vertices
P_SKIN, P_LID_UP, P_LID_LO, P_TEETH_UP, P_TEETH_LO, P_CAVITY, P_BUST, P_HAIR, P_BROW = range(9)
HAIRLINE = ([0, 0.5, 1.2, 1.7, 2.3, np.pi], [0.058, 0.056, 0.042, 0.03, -0.02, -0.05])  # z by |azimuth|


def _v(*xyz: float) -> np.ndarray:
    return np.array(xyz, np.float64)


def _smooth(e0: float, e1: float, x):
    t = np.clip((np.asarray(x, np.float64) - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _gauss(x, z, cx: float, cz: float, sx: float, sz: float):
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((z - cz) / sz) ** 2))


def _dense_samples(n: int, lo: float, hi: float, centre: float, width: float, boost: float) -> np.ndarray:
    """n samples in [lo, hi], (1 + boost) times denser around ``centre``: detail where the face is."""
    s = np.linspace(lo, hi, 4001)
    dens = 1 + boost * np.exp(-(((s - centre) / width) ** 2))
    cdf = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(s))])
    return np.interp(np.linspace(0.0, 1.0, n), cdf / cdf[-1], s)


def _taper(z):
    """The jaw is narrower than the cranium."""
    return 1 - 0.17 * _smooth(0.0, -0.09, z)


def _uv_of(x, z):
    """Azimuth and polar angle of the front skin point at (x, z) (features move y only)."""
    v = np.arccos(np.clip(z / AZ, -1, 1))
    return np.arcsin(np.clip(x / (AX * np.sin(v) * _taper(z)), -1, 1)), v


def _surface(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The head's skin at azimuth u (0 = front) and polar angle v (0 = top): an ellipsoid skull with
    a narrower jaw, ears, and the face's features pushed forward (along -Y only, so a feature's
    x and z are those of the ellipsoid)."""
    su, cu, sv, cv = np.sin(u), np.cos(u), np.sin(v), np.cos(v)
    x, y, z = AX * sv * su, -AY * sv * cu, AZ * cv
    x = x * _taper(z)
    front = _smooth(0.0, 0.5, cu) * _smooth(0.2, 0.5, sv)
    ax = np.abs(x)
    bump = (
        0.022 * _gauss(x, z, 0.0, -0.026, 0.0095, 0.011)  # nose tip
        + 0.014 * _gauss(x, z, 0.0, 0.002, 0.0075, 0.02)  # nose bridge
        + 0.010 * _gauss(ax, z, 0.012, -0.032, 0.007, 0.006)  # nostril wings
        + 0.007 * _gauss(ax, z, 0.028, BROW_Z - 0.001, 0.02, 0.007)  # brow ridge
        - 0.015 * _gauss(ax, z, EYE_X, EYE_Z, 0.012, 0.0105)  # eye sockets
        + 0.005 * _gauss(ax, z, 0.045, -0.01, 0.015, 0.014)  # cheekbones
        + 0.008 * _gauss(x, z, 0.0, -0.05, 0.03, 0.025)  # muzzle
        + 0.006 * _gauss(x, z, 0.0, Z_MOUTH + 0.0065, 0.017, 0.0045)  # upper lip
        + 0.007 * _gauss(x, z, 0.0, Z_MOUTH - 0.0075, 0.015, 0.0055)  # lower lip
        - 0.003 * _gauss(ax, z, 0.021, Z_MOUTH, 0.004, 0.005)  # mouth corners
        + 0.012 * _gauss(x, z, 0.0, -0.09, 0.02, 0.013)  # chin
    )
    y = y - front * bump
    side = _smooth(0.75, 0.95, np.abs(sv * su))
    ear = 0.016 * _gauss(y, z, 0.008, 0.0, 0.011, 0.022)
    x = x + np.sign(x) * side * ear
    return np.stack([x, y, z], axis=-1)


@dataclass
class _Mesh:
    """Vertices, faces and per-vertex / per-face tags, built part by part."""

    verts: list = field(default_factory=list)  # (n, 3) arrays
    part: list = field(default_factory=list)
    faces: list = field(default_factory=list)
    face_mat: list = field(default_factory=list)
    n: int = 0

    def add(self, co: np.ndarray, part: int) -> np.ndarray:
        co = np.asarray(co, np.float64).reshape(-1, 3)
        idx = np.arange(self.n, self.n + len(co))
        self.verts.append(co)
        self.part.append(np.full(len(co), part))
        self.n += len(co)
        return idx

    def face(self, idx: tuple, mat: int) -> None:
        self.faces.append(tuple(int(i) for i in idx))
        self.face_mat.append(mat)

    def grid(self, idx: np.ndarray, mat: int, wrap: bool = False) -> None:
        """Quads over an index grid (rows x cols), columns closed into a ring with ``wrap``."""
        rows, cols = idx.shape
        for i in range(rows - 1):
            for j in range(cols if wrap else cols - 1):
                j1 = (j + 1) % cols
                q = (idx[i, j], idx[i + 1, j], idx[i + 1, j1], idx[i, j1])
                self.face(q, mat)


def _orient(co: np.ndarray, faces: list, first: int, last: int, centre: np.ndarray, outward: bool) -> None:
    """Flip faces[first:last] so their normals point away from (or toward) ``centre``."""
    if last <= first:
        return
    tri = np.array([f[:3] for f in faces[first:last]])
    a, b, c = co[tri[:, 0]], co[tri[:, 1]], co[tri[:, 2]]
    normal = np.cross(b - a, c - a)
    sign = np.einsum("ij,ij->i", normal, (a + b + c) / 3 - centre).sum()
    if (sign > 0) != outward:
        faces[first:last] = [tuple(reversed(f)) for f in faces[first:last]]


@dataclass
class _Head:
    co: np.ndarray  # (n, 3) rest positions
    part: np.ndarray
    faces: list
    face_mat: list
    lower: np.ndarray  # bool: below the mouth line (moves with the jaw)
    lids: dict  # (side, upper) -> (indices, phi, psi, radius, centre)
    eye_centres: dict  # side -> (3,)
    jaw_weight: np.ndarray = None


def _build_geometry() -> _Head:
    m = _Mesh()
    nu, nv = 96, 72
    u = _dense_samples(nu + 1, -np.pi, np.pi, 0.0, 0.7, 2.5)[:-1]
    u[nu // 2] = 0.0
    v = _dense_samples(nv + 1, 0.0, np.pi, 1.85, 0.5, 2.5)
    v_mouth = math.acos(Z_MOUTH / AZ)
    i_m = int(np.argmin(np.abs(v - v_mouth)))
    v[i_m] = v_mouth
    # skin grid: poles + rows 1..nv-1
    top = m.add(_surface(np.zeros(1), np.zeros(1)), P_SKIN)[0]
    uu, vv = np.meshgrid(u, v[1:-1])
    grid_co = _surface(uu, vv)
    grid = m.add(grid_co.reshape(-1, 3), P_SKIN).reshape(nv - 1, nu)
    bottom = m.add(_surface(np.zeros(1), np.full(1, np.pi)), P_SKIN)[0]
    row_m = i_m - 1  # grid row of the mouth line
    mouth_cols = np.nonzero(np.abs(u) < U_MOUTH)[0]
    inner = mouth_cols[1:-1]  # the corners stay shared: the slit closes there
    # the lower lip's own copy of the mouth line, 0.8 mm lower at the centre so the lips read as parted
    lo_co = grid_co[row_m, inner] + np.stack(
        [np.zeros(len(inner)), np.zeros(len(inner)), -0.0008 * np.cos(u[inner] / U_MOUTH * np.pi / 2)], axis=1
    )
    lo_line = dict(zip(inner.tolist(), m.add(lo_co, P_SKIN).tolist(), strict=True))
    lower_rows = grid.copy()
    lower_rows[row_m, inner] = [lo_line[j] for j in inner]
    first = len(m.faces)
    for j in range(nu):
        m.face((top, grid[0, j], grid[0, (j + 1) % nu]), SKIN)
    upper_part = grid[: row_m + 1]
    below = np.vstack([lower_rows[row_m : row_m + 1], grid[row_m + 1 :]])
    m.grid(upper_part, SKIN, wrap=True)
    m.grid(below, SKIN, wrap=True)
    for j in range(nu):
        m.face((bottom, grid[-1, (j + 1) % nu], grid[-1, j]), SKIN)
    # inner lip flanges: the lips' thickness, seen when the mouth opens
    fl_up = m.add(grid_co[row_m, inner] + _v(0.0, 0.006, 0.0018), P_SKIN)
    fl_lo = m.add(lo_co + _v(0.0, 0.006, -0.0018), P_SKIN)
    edge_up = np.concatenate([[grid[row_m, mouth_cols[0]]], grid[row_m, inner], [grid[row_m, mouth_cols[-1]]]])
    edge_lo = np.concatenate([[grid[row_m, mouth_cols[0]]], [lo_line[j] for j in inner], [grid[row_m, mouth_cols[-1]]]])
    in_up = np.concatenate([[edge_up[0]], fl_up, [edge_up[-1]]])
    in_lo = np.concatenate([[edge_lo[0]], fl_lo, [edge_lo[-1]]])
    for e, f in ((edge_up, in_up), (edge_lo, in_lo)):
        for j in range(len(e) - 1):
            quad = (e[j], f[j], f[j + 1], e[j + 1])
            m.face(tuple(dict.fromkeys(quad)), LIPS)  # triangles at the corners
    skin_faces_end = len(m.faces)
    co = np.concatenate(m.verts)
    _orient(co, m.faces, first, skin_faces_end - 2 * (len(edge_up) - 1), np.zeros(3), outward=True)
    # lip and brow materials on the skin, by face centre
    n_skin = len(co)
    y_lip = float(grid_co[row_m, nu // 2, 1])
    lower = np.zeros(n_skin, bool)
    lower[grid[row_m + 1 :].ravel()] = True
    lower[list(lo_line.values())] = True
    lower[bottom] = True
    lower[fl_lo] = True
    for k in range(first, skin_faces_end - 2 * (len(edge_up) - 1)):
        c = co[list(m.faces[k])].mean(axis=0)
        x, y, z = c
        if y < -0.05 and (x / (AX * 0.36)) ** 2 + ((z - Z_MOUTH) / (0.0105 if z > Z_MOUTH else 0.0125)) ** 2 < 1:
            m.face_mat[k] = LIPS
    _hair_and_brows(m, u)
    # eyelids: sphere bands around each eye about the x axis; phi from the top (0) over the front (90 deg)
    lids, eye_centres = {}, {}
    for side, sx in (("L", 1.0), ("R", -1.0)):
        ue = math.asin(EYE_X / (AX * math.sin(math.acos(EYE_Z / AZ)))) * sx
        surf_y = float(_surface(np.array([ue]), np.array([math.acos(EYE_Z / AZ)]))[0, 1])
        centre = np.array([sx * EYE_X, surf_y - 0.0068 + EYE_R, EYE_Z])
        eye_centres[side] = centre
        psi = np.radians(np.linspace(-78, 78, 17))
        for upper, (start, edge, radius) in ((True, (-40.0, 68.0, 1.15)), (False, (210.0, 120.0, 1.09))):
            phi = np.radians(np.concatenate([np.linspace(start, edge - 5 * np.sign(edge - start), 9), [edge]]))
            pp, ss = np.meshgrid(phi, psi, indexing="ij")
            r = EYE_R * radius
            lid_co = centre + r * np.stack([np.sin(ss), -np.sin(pp) * np.cos(ss), np.cos(pp) * np.cos(ss)], -1)
            idx = m.add(lid_co.reshape(-1, 3), P_LID_UP if upper else P_LID_LO).reshape(pp.shape)
            f0 = len(m.faces)
            m.grid(idx, SKIN)
            if upper:  # lashes on the last band
                for k in range(len(m.faces) - (len(psi) - 1), len(m.faces)):
                    m.face_mat[k] = LASH
            _orient(np.concatenate(m.verts), m.faces, f0, len(m.faces), centre, outward=True)
            lids[(side, upper)] = (idx.ravel(), pp.ravel(), ss.ravel(), r, centre)
    # teeth: two curved strips behind the lips
    arc = np.linspace(-1.0, 1.0, 13)
    rt = 0.026
    spans = ((True, (Z_MOUTH + 0.0075, Z_MOUTH + 0.0005)), (False, (Z_MOUTH - 0.0008, Z_MOUTH - 0.0068)))
    for upper, (z0, z1) in spans:
        ring = np.stack([rt * np.sin(arc), y_lip + 0.0095 + rt * (1 - np.cos(arc)), np.zeros_like(arc)], 1)
        rows = [ring + _v(0, 0, z0), ring + _v(0, 0, z1)]
        idx = m.add(np.concatenate(rows), P_TEETH_UP if upper else P_TEETH_LO).reshape(2, -1)
        f0 = len(m.faces)
        m.grid(idx, TEETH)
        _orient(np.concatenate(m.verts), m.faces, f0, len(m.faces), np.array([0, y_lip + 0.04, Z_MOUTH]), True)
    # mouth cavity: the back of an ellipsoid behind the teeth, dark, seen from inside
    cav_c = np.array([0.0, y_lip + 0.03, Z_MOUTH - 0.004])
    cav_r = np.array([0.024, 0.024, 0.02])
    a_pol = np.linspace(np.radians(57), np.pi, 11)  # polar angle from the front (-y) axis: the front cap is open
    a_az = np.linspace(0, 2 * np.pi, 21)[:-1]
    aa, bb = np.meshgrid(a_pol, a_az, indexing="ij")
    cav = cav_c + cav_r * np.stack([np.sin(aa) * np.cos(bb), -np.cos(aa), np.sin(aa) * np.sin(bb)], -1)
    idx = m.add(cav[:-1].reshape(-1, 3), P_CAVITY).reshape(len(a_pol) - 1, -1)
    back = m.add(cav[-1, :1], P_CAVITY)[0]
    f0 = len(m.faces)
    m.grid(idx, MOUTH, wrap=True)
    for j in range(idx.shape[1]):
        m.face((idx[-1, j], back, idx[-1, (j + 1) % idx.shape[1]]), MOUTH)
    _orient(np.concatenate(m.verts), m.faces, f0, len(m.faces), cav_c, outward=False)
    # neck and shoulders: a lathe from inside the head down to the chest
    zs = np.linspace(-0.085, -0.30, 15)
    ang = np.linspace(0, 2 * np.pi, 33)[:-1]
    grow = _smooth(-0.15, -0.27, zs)[:, None]
    neck = _smooth(-0.085, -0.11, zs)[:, None]  # narrow where it starts inside the head
    rx, ry = 0.04 + 0.012 * neck + 0.115 * grow, 0.036 + 0.01 * neck + 0.033 * grow
    ring = np.stack([rx * np.sin(ang), 0.025 - 0.005 * neck + ry * -np.cos(ang), np.repeat(zs[:, None], len(ang), 1)],
                    -1)
    idx = m.add(ring.reshape(-1, 3), P_BUST).reshape(len(zs), -1)
    cap = m.add(np.array([[0.0, 0.02, zs[-1]]]), P_BUST)[0]
    f0 = len(m.faces)
    m.grid(idx, SKIN, wrap=True)
    for k in range(f0, len(m.faces)):
        if ring.reshape(-1, 3)[np.asarray(m.faces[k]) - idx[0, 0], 2].mean() < -0.185:
            m.face_mat[k] = CLOTH
    for j in range(idx.shape[1]):
        m.face((idx[-1, (j + 1) % idx.shape[1]], idx[-1, j], cap), CLOTH)
    co = np.concatenate(m.verts)
    _orient(co, m.faces, f0, len(m.faces), np.array([0.0, 0.02, -0.2]), outward=True)
    part = np.concatenate(m.part)
    full_lower = np.zeros(len(co), bool)
    full_lower[: len(lower)] = lower
    full_lower[part == P_TEETH_LO] = True
    return _Head(co, part, m.faces, m.face_mat, full_lower, lids, eye_centres)


def _hair_and_brows(m: _Mesh, u: np.ndarray) -> None:
    """A hair cap shell just above the skin, its edge on a smooth hairline, and two eyebrow strips
    (own geometry, so their edges are smooth curves rather than the skin grid's steps)."""
    hz = np.interp(np.abs(u), *HAIRLINE)
    t = np.linspace(0.0, 1.0, 15)[1:]
    tt, uu = np.meshgrid(t, u, indexing="ij")
    vv = tt * np.arccos(np.clip(hz / AZ, -1, 1))[None, :]
    base = _surface(uu, vv)
    thick = 0.0012 + 0.0065 * _smooth(1.0, 0.6, tt)
    shell = base * (1 + thick / np.linalg.norm(base, axis=-1))[..., None]
    shell[..., 1] += 0.006 * _smooth(1.0, 0.5, tt) * (1 - _smooth(0.0, 0.6, np.cos(uu)))  # fuller at the back
    top = m.add(np.array([[0.0, 0.0, AZ + 0.0077]]), P_HAIR)[0]
    idx = m.add(shell.reshape(-1, 3), P_HAIR).reshape(shell.shape[:2])
    f0 = len(m.faces)
    for j in range(len(u)):
        m.face((top, idx[0, j], idx[0, (j + 1) % len(u)]), HAIR)
    m.grid(idx, HAIR, wrap=True)
    _orient(np.concatenate(m.verts), m.faces, f0, len(m.faces), np.zeros(3), outward=True)
    for s in (1.0, -1.0):
        a = np.linspace(0.0, 1.0, 13)
        bx = 0.011 + 0.04 * a
        bz = BROW_Z + 0.0005 + 0.006 * np.sin(np.pi * np.minimum(a / 0.8, 1.0) * 0.75) - 0.004 * a**3
        half = 0.0034 - 0.0019 * a
        rows = []
        for dz in (half, -half):
            uu, vv = _uv_of(bx, bz + dz)
            p = _surface(s * uu, vv)
            p[:, 1] -= 0.0014
            rows.append(p)
        idx = m.add(np.concatenate(rows), P_BROW).reshape(2, -1)
        f0 = len(m.faces)
        m.grid(idx, HAIR)
        _orient(np.concatenate(m.verts), m.faces, f0, len(m.faces), np.array([0.0, 0.0, 0.0]), outward=True)


def _jaw_weight(h: _Head) -> np.ndarray:
    """How much each vertex follows the jaw: the lower face fully, fading toward the ears and neck."""
    x, y, z = h.co.T
    skin = h.part == P_SKIN
    near_mouth = np.sqrt(np.clip(1 - (x / (AX * 0.36)) ** 2, 0, 1))  # an oval opening, not a box
    below = _smooth(Z_MOUTH + 0.004, Z_MOUTH - 0.03, z)
    w = np.where(h.lower, np.maximum(below, near_mouth), below)
    w = w * _smooth(0.045, -0.02, y) * skin  # the back of the head and the neck stay
    w[h.part == P_TEETH_LO] = 1.0
    cav = h.part == P_CAVITY
    w[cav] = 0.7 * _smooth(Z_MOUTH - 0.002, Z_MOUTH - 0.014, z[cav])  # stays clear of the neck
    return w


def _rotate_x(co: np.ndarray, centre: np.ndarray, angle: np.ndarray) -> np.ndarray:
    r = co - centre
    c, s = np.cos(angle), np.sin(angle)
    out = r.copy()
    out[:, 1] = r[:, 1] * c - r[:, 2] * s
    out[:, 2] = r[:, 1] * s + r[:, 2] * c
    return out + centre


def _lid_delta(h: _Head, side: str, upper: bool, new_edge_deg: float) -> np.ndarray:
    """Move one lid so its edge sits at ``new_edge_deg`` (stretching the band, its hidden end fixed)."""
    d = np.zeros_like(h.co)
    idx, phi, psi, r, centre = h.lids[(side, upper)]
    start, edge = phi.min() if upper else phi.max(), phi.max() if upper else phi.min()
    new = start + (phi - start) * (math.radians(new_edge_deg) - start) / (edge - start)
    pos = centre + r * np.stack([np.sin(psi), -np.sin(new) * np.cos(psi), np.cos(new) * np.cos(psi)], -1)
    d[idx] = pos - h.co[idx]
    return d


def _shape_keys(h: _Head) -> dict[str, np.ndarray]:
    """ARKit name -> per-vertex offsets (n, 3)."""
    co = h.co
    x, y, z = co.T
    skin = np.isin(h.part, (P_SKIN, P_BROW)).astype(np.float64)
    face = skin * _smooth(0.02, -0.04, y)  # the front of the face only
    w_jaw = h.jaw_weight

    def vec(wt, dx=0.0, dy=0.0, dz=0.0) -> np.ndarray:
        return np.stack([wt * dx, wt * dy, wt * dz], axis=1)

    jaw_open = _rotate_x(co, HINGE, JAW_OPEN_ANGLE * w_jaw) - co
    xm = AX * 0.36
    lips = face * _gauss(x, z, 0.0, Z_MOUTH, xm * 1.05, 0.009)
    lip_up = lips * ~h.lower
    lip_lo = lips * h.lower
    lower_lip_zone = face * h.lower * _gauss(x, z, 0.0, Z_MOUTH - 0.006, xm * 1.3, 0.014)
    corner = {s: face * _gauss(x, z, s * xm, Z_MOUTH, 0.015, 0.011) for s in (1, -1)}  # wide: no folds
    half = {1: _smooth(-0.008, 0.012, x), -1: _smooth(0.008, -0.012, x)}
    cheek = {s: face * _gauss(x, z, s * 0.045, -0.041, 0.016, 0.017) for s in (1, -1)}
    keys: dict[str, np.ndarray] = {}
    keys["jawOpen"] = jaw_open
    keys["jawForward"] = vec(w_jaw, dy=-0.008)
    keys["mouthClose"] = -jaw_open * (lower_lip_zone / np.maximum(lower_lip_zone.max(), 1e-9))[:, None] + vec(
        lip_up, dz=-0.001
    )
    keys["mouthFunnel"] = vec(lips, dy=-0.007) + vec(lip_up, dz=0.004) + vec(lip_lo, dz=-0.005) + vec(
        lips * _smooth(0.5 * xm, 1.1 * xm, np.abs(x)), dx=1.0
    ) * (-0.006 * np.sign(x))[:, None]
    keys["mouthPucker"] = vec(lips, dy=-0.009) + np.stack([-0.35 * x * lips, 0 * x, 0 * x], 1)
    keys["mouthRollLower"] = vec(lip_lo, dy=0.006, dz=0.003)
    keys["mouthRollUpper"] = vec(lip_up, dy=0.006, dz=-0.003)
    keys["mouthShrugLower"] = vec(lower_lip_zone, dy=-0.003, dz=0.004)
    keys["mouthShrugUpper"] = vec(lip_up, dy=-0.002, dz=0.003)
    for s, sn in ((1, "Left"), (-1, "Right")):
        c, hs = corner[s], half[s]
        keys[f"jaw{sn}"] = vec(w_jaw, dx=0.008 * s)
        keys[f"mouth{sn}"] = vec(lips + 0.5 * corner[1] + 0.5 * corner[-1], dx=0.008 * s)
        keys[f"mouthSmile{sn}"] = vec(c, dx=0.006 * s, dy=0.003, dz=0.009) + vec(cheek[s], dy=-0.003, dz=0.004)
        keys[f"mouthFrown{sn}"] = vec(c, dx=0.001 * s, dy=0.001, dz=-0.008)
        keys[f"mouthDimple{sn}"] = vec(c, dx=0.003 * s, dy=0.004)
        keys[f"mouthStretch{sn}"] = vec(c + 0.3 * lips * hs, dx=0.007 * s, dz=-0.003)
        keys[f"mouthPress{sn}"] = vec(lip_up * hs, dy=0.002, dz=-0.0025) + vec(lip_lo * hs, dy=0.002, dz=0.0025)
        keys[f"mouthLowerDown{sn}"] = vec(lip_lo * hs, dy=0.001, dz=-0.008)
        keys[f"mouthUpperUp{sn}"] = vec(lip_up * hs, dy=-0.001, dz=0.007)
        brow = face * _gauss(x, z, s * 0.028, BROW_Z + 0.001, 0.02, 0.011)
        keys[f"browDown{sn}"] = vec(brow, dx=-0.002 * s, dy=-0.001, dz=-0.006)
        keys[f"browOuterUp{sn}"] = vec(face * _gauss(x, z, s * 0.043, BROW_Z - 0.001, 0.013, 0.011), dz=0.008)
        keys[f"cheekSquint{sn}"] = vec(face * _gauss(x, z, s * 0.04, -0.01, 0.012, 0.01), dy=-0.002, dz=0.004)
        keys[f"noseSneer{sn}"] = vec(face * _gauss(x, z, s * 0.011, -0.023, 0.008, 0.008), dy=-0.001, dz=0.004)
        side = "L" if s == 1 else "R"
        keys[f"eyeBlink{sn}"] = _lid_delta(h, side, True, 119.0) + _lid_delta(h, side, False, 113.0)
        keys[f"eyeWide{sn}"] = _lid_delta(h, side, True, 50.0) + _lid_delta(h, side, False, 126.0)
        keys[f"eyeSquint{sn}"] = _lid_delta(h, side, True, 76.0) + _lid_delta(h, side, False, 106.0)
    keys["browInnerUp"] = vec(face * _gauss(x, z, 0.0, BROW_Z + 0.001, 0.019, 0.012), dz=0.008)
    keys["cheekPuff"] = np.stack([np.sign(x) * 0.010, np.full_like(x, -0.004), np.zeros_like(x)], 1) * (
        cheek[1] + cheek[-1]
    )[:, None]
    return keys


def eye_geometry(centre: np.ndarray) -> tuple[np.ndarray, list, list]:
    """An eyeball at ``centre`` (head-local): a UV sphere whose pole looks forward (-Y); pupil, iris and
    sclera by angle from the front. Returns world vertices, faces and their material indices."""
    pol = np.linspace(0, np.pi, 17)[1:-1]
    az = np.linspace(0, 2 * np.pi, 25)[:-1]
    pp, aa = np.meshgrid(pol, az, indexing="ij")
    ring = np.stack([np.sin(pp) * np.cos(aa), -np.cos(pp), np.sin(pp) * np.sin(aa)], -1) * EYE_R
    co = np.concatenate([[[0, -EYE_R, 0]], ring.reshape(-1, 3), [[0, EYE_R, 0]]]) + centre + HEAD_CENTER
    idx = np.arange(1, 1 + ring.shape[0] * ring.shape[1]).reshape(ring.shape[:2])
    n = len(az)
    faces, mat = [], []
    for j in range(n):
        faces.append((0, idx[0, j], idx[0, (j + 1) % n]))
        mat.append(PUPIL)
    for i in range(len(pol) - 1):
        a = np.degrees(pol[i])
        for j in range(n):
            faces.append((idx[i, j], idx[i + 1, j], idx[i + 1, (j + 1) % n], idx[i, (j + 1) % n]))
            mat.append(PUPIL if a < 11 else IRIS if a < 30 else SCLERA)
    for j in range(n):
        faces.append((len(co) - 1, idx[-1, (j + 1) % n], idx[-1, j]))
        mat.append(SCLERA)
    _orient(co, faces, 0, len(faces), centre + HEAD_CENTER, outward=True)
    return co, faces, mat


def build_geometry() -> _Head:
    """The head mesh (head-local), with its jaw weights."""
    h = _build_geometry()
    h.jaw_weight = _jaw_weight(h)
    return h


def skin_weights(h: _Head) -> dict[str, np.ndarray]:
    """Per-vertex weights of the head mesh for the bones ``head``, ``jaw`` and ``neck``."""
    w_jaw = h.jaw_weight
    w_neck = np.where(h.part == P_BUST, 1 - _smooth(-0.075, -0.045, h.co[:, 2]), 0.0)
    return {"head": 1.0 - w_jaw - w_neck, "jaw": w_jaw, "neck": w_neck}


def bones() -> dict[str, tuple[np.ndarray, np.ndarray, str | None]]:
    """Bone -> (head, tail, parent) in world coordinates: neck -> head -> jaw (hinged at ``HINGE``)."""
    c = HEAD_CENTER
    neck_tail = c + _v(0, 0.016, -0.065)
    return {
        "neck": (c + _v(0, 0.016, -0.2), neck_tail, None),
        "head": (neck_tail, c + _v(0, 0.016, 0.13), "neck"),
        "jaw": (c + HINGE, c + _v(0.0, -0.085, -0.095), "head"),
    }


def shape_keys(h: _Head) -> list[tuple[str, np.ndarray]]:
    """(ARKit name, per-vertex delta) of every shape key, in ARKit order."""
    order = {n: i for i, n in enumerate(ARKIT_NAMES)}
    return sorted(_shape_keys(h).items(), key=lambda kv: order.get(kv[0], 99))
