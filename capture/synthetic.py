"""``synthetic`` source: a deterministic, game-like 3D scene rendered with numpy alone.

The scene is a kart-racing flavoured view: a sky gradient with scrolling
clouds, a textured ground plane and a winding road in perspective with
distance fog, shaded spheres (trees and rival "karts") with ground shadows
that move as the camera drives, the player's vehicle and a HUD. Every frame
carries the word SYNTHETIC in the HUD, and the source reports
``synthetic=True`` so the recorder marks it in ``frames.csv`` and the run log.

Rendering is a pure function of ``(seed, width, height, frame index, fps)``:
the same arguments always give the same bytes on the same platform. Scene time
is ``index / fps`` (not the wall clock), so captures are reproducible.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from cloud3d.errors import Cloud3dError

from .source import FrameSource, Geometry

_TEX = 256  # ground texture size (power of two: wrap with a bit mask)


class SyntheticScene:
    """Renderer for one output size and seed.

    Args:
        width, height: frame size in pixels (at least 64x48).
        seed: integer seed of textures and object placement.
    """

    def __init__(self, width: int = 1280, height: int = 720, seed: int = 0) -> None:
        if width < 64 or height < 48:
            raise Cloud3dError(f"synthetic frames must be at least 64x48, got {width}x{height}")
        self.width, self.height, self.seed = width, height, seed
        rng = np.random.default_rng(seed)
        w, h = width, height
        self.horizon = int(h * 0.42)
        self.focal = 0.9 * w
        self.cam_h = 1.6
        # Sky: vertical gradient plus a cloud band twice the width (scrolls with yaw).
        t = np.linspace(0.0, 1.0, self.horizon, dtype=np.float32)[:, None]
        top, bottom = np.array([40, 90, 190], np.float32), np.array([175, 205, 235], np.float32)
        sky = top * (1 - t[..., None]) + bottom * t[..., None]
        noise = _smooth_noise(rng, self.horizon, 2 * w, cell=max(8, w // 24))
        band = np.clip((noise - 0.55) * 3.0, 0, 1) * (1 - t) ** 0.5
        sky2 = np.repeat(sky, 2 * w, axis=1)
        self.sky = (sky2 * (1 - band[..., None]) + 245 * band[..., None]).astype(np.uint8)
        # Ground texture: grass with noise; road texture: asphalt with lane marks.
        g = rng.integers(0, 48, size=(_TEX, _TEX), dtype=np.int16)
        g = (g + np.roll(g, 1, 0) + np.roll(g, 1, 1)) // 3
        checker = ((np.arange(_TEX)[:, None] // 32 + np.arange(_TEX)[None, :] // 32) % 2) * 14
        grass = np.stack([60 + g // 2 + checker, 120 + g + checker, 45 + g // 3], axis=-1)
        self.grass = np.clip(grass, 0, 255).astype(np.uint8).reshape(-1, 3)
        a = rng.integers(0, 24, size=(_TEX, _TEX), dtype=np.int16)
        road = np.stack([95 + a, 95 + a, 100 + a], axis=-1)
        lane = (np.abs(np.arange(_TEX) - _TEX // 2) < 3)[None, :] & ((np.arange(_TEX) // 32) % 2 == 0)[:, None]
        road[lane] = (235, 225, 120)
        self.road = np.clip(road, 0, 255).astype(np.uint8).reshape(-1, 3)
        # Per-row depth and fog for the ground rows; per-column view direction.
        rows = np.arange(self.horizon, h, dtype=np.float32) - self.horizon + 0.5
        self.z = (self.cam_h * self.focal / rows).astype(np.float32)
        fog = np.clip(1.0 - np.exp(-self.z / 60.0), 0, 1)
        self.fog_a = (fog * 256).astype(np.uint16)[:, None, None]
        self.fog_c = np.array([175, 205, 235], np.uint16) * self.fog_a
        self.xs = ((np.arange(w, dtype=np.float32) - w / 2 + 0.5) / self.focal)[None, :]
        # Objects: trees beside the road (static) and rival karts on it (moving).
        n = 40
        self.tree_z = np.sort(rng.uniform(0, 400, n)).astype(np.float64)
        self.tree_side = rng.choice([-1.0, 1.0], n) * rng.uniform(6, 18, n)
        self.tree_r = rng.uniform(1.0, 2.2, n)
        self.tree_col = np.stack([rng.uniform(20, 60, n), rng.uniform(100, 170, n), rng.uniform(20, 60, n)], 1)
        k = 5
        self.kart_z0 = rng.uniform(10, 80, k)
        self.kart_v = rng.uniform(-3, 3, k)
        self.kart_lane = rng.uniform(-2.5, 2.5, k)
        self.kart_col = rng.uniform(60, 240, (k, 3))
        self.speed = 18.0  # metres per second

    # -- camera --------------------------------------------------------------------------
    @staticmethod
    def road_x(z):
        """Road centre line x (metres) as a function of distance z along the course."""
        return 8.0 * np.sin(z / 45.0) + 3.0 * np.sin(z / 13.0)

    def camera(self, t: float) -> tuple[float, float, float]:
        """Camera position ``(x, z)`` and yaw (radians) at scene time ``t`` seconds."""
        z = self.speed * t
        x = float(self.road_x(z)) + 0.8 * math.sin(t * 0.7)
        ahead = float(self.road_x(z + 8.0))
        yaw = math.atan2(ahead - x, 8.0)
        return x, z, yaw

    # -- rendering -----------------------------------------------------------------------
    def render(self, index: int, fps: float = 30.0) -> np.ndarray:
        """Frame ``index`` at scene time ``index / fps`` as ``(H, W, 3) uint8`` RGB."""
        t = index / fps
        w, h, hz = self.width, self.height, self.horizon
        cx, cz, yaw = self.camera(t)
        img = np.empty((h, w, 3), np.uint8)
        # Sky, scrolled by yaw (one full turn = the band's width).
        off = int((yaw / (2 * math.pi)) * 2 * w + t * 6) % (2 * w)
        sky = np.concatenate([self.sky[:, off:], self.sky[:, :off]], axis=1) if off else self.sky
        img[:hz] = sky[:, :w]
        # Ground: intersect each pixel's ray with the plane y = 0.
        s, c = math.sin(yaw), math.cos(yaw)
        z = self.z[:, None]
        wx = cx + z * (s + self.xs * c)
        wz = cz + z * (c - self.xs * s)
        on_road = np.abs(wx - self.road_x(wz).astype(np.float32)) < 4.0
        iu = (wx * 8.0).astype(np.int32) & (_TEX - 1)
        iv = (wz * 8.0).astype(np.int32) & (_TEX - 1)
        flat = iv * _TEX + iu
        ground = np.where(on_road[..., None], self.road[flat], self.grass[flat]).astype(np.uint16)
        ground *= 256 - self.fog_a
        ground += self.fog_c
        img[hz:] = (ground >> 8).astype(np.uint8)
        self._draw_objects(img, cx, cz, s, c, t)
        self._draw_player(img, t)
        self._draw_hud(img, index, t)
        return img

    def _project(self, x, y, z, cx, cz, s, c):
        dx, dz = x - cx, z - cz
        depth = dx * s + dz * c
        side = dx * c - dz * s
        return depth, side

    def _draw_objects(self, img, cx, cz, s, c, t) -> None:
        period = 400.0
        objs = []
        base = math.floor(cz / period) * period
        for k in range(2):  # this lap of trees and the next
            tz = self.tree_z + base + k * period
            tx = self.road_x(tz) + self.tree_side
            for i in range(len(tz)):
                objs.append((tx[i], self.tree_r[i] * 1.5, tz[i], self.tree_r[i] * 1.5, self.tree_col[i]))
        for i in range(len(self.kart_z0)):
            kz = cz + self.kart_z0[i] + self.kart_v[i] * t
            kx = float(self.road_x(kz)) + self.kart_lane[i] + 0.8 * math.sin(t + i)
            objs.append((kx, 0.6, kz, 0.6, self.kart_col[i]))
        drawn = []
        for x, y, z, r, col in objs:
            depth, side = self._project(x, y, z, cx, cz, s, c)
            if depth < 1.0 or depth > 250:
                continue
            drawn.append((depth, side, y, r, col))
        drawn.sort(key=lambda o: -o[0])
        f, w, hz = self.focal, self.width, self.horizon
        for depth, side, y, r, col in drawn:
            px = w / 2 + f * side / depth
            py = hz + f * (self.cam_h - y) / depth
            pr = f * r / depth
            if pr < 0.7 or px + pr < 0 or px - pr >= w:
                continue
            fog = 1.0 - math.exp(-depth / 60.0)
            gy = hz + f * self.cam_h / depth  # ground contact row: shadow
            _shadow(img, px + 0.3 * pr, gy, pr, pr * 0.25)
            _sphere(img, px, py, pr, col, fog)

    def _draw_player(self, img, t) -> None:
        w, h = self.width, self.height
        bw, bh = int(w * 0.16), int(h * 0.10)
        x0 = w // 2 - bw // 2 + int(4 * math.sin(t * 3.1))
        y0 = h - bh - int(h * 0.04)
        yy = np.linspace(1.0, 0.55, bh, dtype=np.float32)[:, None, None]
        body = (np.array([200, 40, 40], np.float32) * yy).astype(np.uint8)
        img[y0 : y0 + bh, max(x0, 0) : x0 + bw] = body
        wr = max(2, bh // 3)
        for wx in (x0 - wr // 2, x0 + bw - wr):
            img[y0 + bh - wr : y0 + bh, max(wx, 0) : wx + wr + wr // 2] = (25, 25, 25)

    def _draw_hud(self, img, index: int, t: float) -> None:
        w, h = self.width, self.height
        bh = max(14, h // 28)
        bw = min(w, max(200, w // 3))
        region = Image.fromarray(img[:bh, :bw])
        d = ImageDraw.Draw(region)
        d.rectangle([0, 0, bw, bh], fill=(20, 20, 30))
        d.text((4, max(0, bh // 2 - 6)), f"SYNTHETIC seed={self.seed} frame={index} t={t:6.2f}s",
               fill=(255, 255, 255))
        img[:bh, :bw] = np.asarray(region)
        # speed bar, bottom right
        frac = 0.6 + 0.35 * math.sin(t * 0.9)
        x1, y1 = w - 12, h - 12
        x0, y0 = x1 - w // 5, y1 - max(6, h // 60)
        img[y0:y1, x0:x1] = (30, 30, 30)
        img[y0 + 2 : y1 - 2, x0 + 2 : x0 + 2 + int((x1 - x0 - 4) * frac)] = (250, 200, 40)


def _smooth_noise(rng, h: int, w: int, cell: int) -> np.ndarray:
    """Bilinear value noise in [0, 1] of shape (h, w), tileable horizontally."""
    gh, gw = h // cell + 2, w // cell
    grid = rng.random((gh, gw)).astype(np.float32)
    ys = np.arange(h, dtype=np.float32) / cell
    xs = np.arange(w, dtype=np.float32) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    x1 = (x0 + 1) % gw
    a, b = grid[y0][:, x0 % gw], grid[y0][:, x1]
    c_, d = grid[y0 + 1][:, x0 % gw], grid[y0 + 1][:, x1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c_ * (1 - fx) + d * fx) * fy


def _bbox(img, px, py, rx, ry):
    h, w = img.shape[:2]
    x0, x1 = max(int(px - rx), 0), min(int(px + rx) + 1, w)
    y0, y1 = max(int(py - ry), 0), min(int(py + ry) + 1, h)
    return x0, x1, y0, y1


def _shadow(img, px, py, rx, ry) -> None:
    x0, x1, y0, y1 = _bbox(img, px, py, rx, ry)
    if x1 <= x0 or y1 <= y0:
        return
    yy = ((np.arange(y0, y1) - py) / max(ry, 0.5))[:, None]
    xx = ((np.arange(x0, x1) - px) / max(rx, 0.5))[None, :]
    m = (xx * xx + yy * yy) < 1.0
    patch = img[y0:y1, x0:x1]
    patch[m] = (patch[m] * 0.55).astype(np.uint8)


_LIGHT = np.array([-0.5, -0.6, 0.62])
_LIGHT = _LIGHT / np.linalg.norm(_LIGHT)


def _sphere(img, px, py, r, col, fog: float) -> None:
    """Lambert-shaded sphere of radius ``r`` pixels centred at (px, py), blended into fog."""
    x0, x1, y0, y1 = _bbox(img, px, py, r, r)
    if x1 <= x0 or y1 <= y0:
        return
    ny = ((np.arange(y0, y1, dtype=np.float32) + 0.5 - py) / r)[:, None]
    nx = ((np.arange(x0, x1, dtype=np.float32) + 0.5 - px) / r)[None, :]
    d2 = nx * nx + ny * ny
    m = d2 < 1.0
    nz = np.sqrt(np.clip(1.0 - d2, 0, 1))
    lam = np.clip(nx * _LIGHT[0] + ny * _LIGHT[1] + nz * _LIGHT[2], 0, 1)
    shade = 0.25 + 0.75 * lam
    rgb = shade[..., None] * np.asarray(col, np.float32)
    rgb = rgb * (1 - fog) + np.array([175, 205, 235], np.float32) * fog
    patch = img[y0:y1, x0:x1]
    patch[m] = np.clip(rgb[m], 0, 255).astype(np.uint8)


class SyntheticSource(FrameSource):
    """Frames of :class:`SyntheticScene`; frame ``i`` shows scene time ``i / fps``.

    Args:
        width, height: frame size (default 1280x720).
        seed: scene seed.
        fps: scene frame rate used to turn frame numbers into scene time.
        start: first frame number (``skip(seconds)`` advances it by ``seconds * fps``).
    """

    kind = "synthetic"
    realtime = False
    synthetic = True

    def __init__(
        self, width: int = 1280, height: int = 720, seed: int = 0, fps: float = 30.0, start: int = 0
    ) -> None:
        if fps <= 0:
            raise Cloud3dError("synthetic --scene-fps must be positive")
        self.scene = SyntheticScene(width, height, seed)
        self.fps = fps
        self.index = start
        self.geometry = Geometry(0, 0, width, height)

    def skip(self, seconds: float) -> None:
        self.index += int(round(seconds * self.fps))

    def grab(self) -> np.ndarray:
        frame = self.scene.render(self.index, self.fps)
        self.index += 1
        return frame

    def describe(self) -> dict:
        return {"kind": self.kind, "synthetic": True, "seed": self.scene.seed,
                "size": f"{self.scene.width}x{self.scene.height}", "scene_fps": self.fps}
