// Deterministic backward: the gradient of one input cell, gathered from every
// box that reads it, in a fixed order (boxes, then bins, then samples). The
// CUDA kernels use these when torch.use_deterministic_algorithms(True) is on;
// the CPU kernels expose the same code so that it is tested everywhere.
#pragma once

#include "roi_geometry.h"

namespace roi_ops {

// Index of the sample of bin (ph, pw) that max mode picks: the first of the
// largest values, an invalid sample counting as 0. -1 for an empty bin.
template <typename scalar_t, typename T>
C10_HOST_DEVICE inline int max_sample_index(
    const BilinearBox<T>& b,
    const scalar_t* plane,
    int64_t height,
    int64_t width,
    int ph,
    int pw) {
  int best = -1;
  T best_value = T(0);
  for (int iy = 0; iy < b.grid_h; ++iy) {
    const AxisSample<T> ay =
        axis_sample(sample_coord(b.start_h, b.bin_h, ph, iy, b.grid_h), height);
    for (int ix = 0; ix < b.grid_w; ++ix) {
      const AxisSample<T> ax = axis_sample(
          sample_coord(b.start_w, b.bin_w, pw, ix, b.grid_w), width);
      const T v = bilinear_value(plane, width, ay, ax);
      if (best < 0 || v > best_value) {
        best = iy * b.grid_w + ix;
        best_value = v;
      }
    }
  }
  return best;
}

// d(loss)/d(input[cell]) for roi_align / roi_warp, cell = (n, c, row, col).
// grad: [K, C, PH, PW] contiguous; input: [N, C, H, W] contiguous (read only
// in max mode); boxes: the K boxes, already on the feature grid.
template <typename scalar_t, typename T>
C10_HOST_DEVICE inline T bilinear_grad_at_cell(
    const scalar_t* grad,
    const scalar_t* input,
    const BilinearBox<T>* boxes,
    const RoiShape& shape,
    const Index4& cell,
    bool max_mode) {
  const int64_t n = cell.i0, c = cell.i1, row = cell.i2, col = cell.i3;
  const int64_t channels = shape.channels, height = shape.height, width = shape.width;
  const int64_t pooled_h = shape.pooled_h, pooled_w = shape.pooled_w;
  T total = T(0);
  for (int64_t k = 0; k < shape.num_rois; ++k) {
    const BilinearBox<T> b = boxes[k];
    if (b.batch != n || b.grid_h <= 0 || b.grid_w <= 0) {
      continue;
    }
    int64_t ph0, ph1, pw0, pw1;
    bins_near_cell(b.start_h, b.bin_h, pooled_h, row, &ph0, &ph1);
    if (ph0 > ph1) {
      continue;
    }
    bins_near_cell(b.start_w, b.bin_w, pooled_w, col, &pw0, &pw1);
    if (pw0 > pw1) {
      continue;
    }
    const scalar_t* g = grad + (k * channels + c) * pooled_h * pooled_w;
    if (!max_mode) {
      for (int64_t ph = ph0; ph <= ph1; ++ph) {
        T wy = T(0);
        for (int iy = 0; iy < b.grid_h; ++iy) {
          wy += axis_weight_at(
              sample_coord(b.start_h, b.bin_h, (int)ph, iy, b.grid_h),
              height,
              row);
        }
        if (wy == T(0)) {
          continue;
        }
        for (int64_t pw = pw0; pw <= pw1; ++pw) {
          T wx = T(0);
          for (int ix = 0; ix < b.grid_w; ++ix) {
            wx += axis_weight_at(
                sample_coord(b.start_w, b.bin_w, (int)pw, ix, b.grid_w),
                width,
                col);
          }
          if (wx != T(0)) {
            total += static_cast<T>(g[ph * pooled_w + pw]) / b.count * wy * wx;
          }
        }
      }
    } else {
      const scalar_t* plane = input + (b.batch * channels + c) * height * width;
      for (int64_t ph = ph0; ph <= ph1; ++ph) {
        for (int64_t pw = pw0; pw <= pw1; ++pw) {
          const int s =
              max_sample_index(b, plane, height, width, (int)ph, (int)pw);
          if (s < 0) {
            continue;
          }
          const T wy = axis_weight_at(
              sample_coord(b.start_h, b.bin_h, (int)ph, s / b.grid_w, b.grid_h),
              height,
              row);
          const T wx = axis_weight_at(
              sample_coord(b.start_w, b.bin_w, (int)pw, s % b.grid_w, b.grid_w),
              width,
              col);
          total += static_cast<T>(g[ph * pooled_w + pw]) * wy * wx;
        }
      }
    }
  }
  return total;
}

// d(loss)/d(input[cell]) for roi_pool, from the forward's argmax.
template <typename scalar_t, typename T>
C10_HOST_DEVICE inline T pool_grad_at_cell(
    const scalar_t* grad,
    const int* argmax,
    const PoolBox<T>* boxes,
    const RoiShape& shape,
    const Index4& cell) {
  const int64_t n = cell.i0, c = cell.i1, row = cell.i2, col = cell.i3;
  const int64_t channels = shape.channels, pooled_h = shape.pooled_h, pooled_w = shape.pooled_w;
  const int plane_index = static_cast<int>(row * shape.width + col);
  T total = T(0);
  for (int64_t k = 0; k < shape.num_rois; ++k) {
    const PoolBox<T> b = boxes[k];
    if (b.batch != n) {
      continue;
    }
    int64_t ph0, ph1, pw0, pw1;
    pool_bins_near_cell(b.start_h, b.bin_h, pooled_h, row, &ph0, &ph1);
    pool_bins_near_cell(b.start_w, b.bin_w, pooled_w, col, &pw0, &pw1);
    const int64_t offset = (k * channels + c) * pooled_h * pooled_w;
    for (int64_t ph = ph0; ph <= ph1; ++ph) {
      for (int64_t pw = pw0; pw <= pw1; ++pw) {
        if (argmax[offset + ph * pooled_w + pw] == plane_index) {
          total += static_cast<T>(grad[offset + ph * pooled_w + pw]);
        }
      }
    }
  }
  return total;
}

} // namespace roi_ops
