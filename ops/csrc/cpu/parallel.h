// The two ways the CPU kernels spread work over cores with at::parallel_for.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

#include "../roi_geometry.h"

namespace roi_ops {

// Boxes handled together for one channel: their reads share the channel's
// plane while it is in cache, and their writes touch few output pages.
constexpr int64_t kBoxBlock = 32;

// Calls fn(c, k) for every channel c and box k, parallel over (block of
// boxes, channel) items. Items write disjoint outputs.
template <typename F>
void parallel_over_channels_and_boxes(int64_t channels, int64_t num_rois, const F& fn) {
  const int64_t blocks = (num_rois + kBoxBlock - 1) / kBoxBlock;
  at::parallel_for(0, blocks * channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t c = item % channels;
      const int64_t k_begin = (item / channels) * kBoxBlock;
      const int64_t k_end = std::min(num_rois, k_begin + kBoxBlock);
      for (int64_t k = k_begin; k < k_end; ++k) {
        fn(c, k);
      }
    }
  });
}

// Sets out[i] = value(cell i) for every cell of an [N, C, H, W] tensor, in
// parallel: the deterministic gather backward, where each cell is written once.
template <typename T, typename F>
void parallel_over_cells(T* out, const RoiShape& s, const F& value) {
  at::parallel_for(0, s.batch * s.channels * s.height * s.width, 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      out[i] = value(unravel(i, s.channels, s.height, s.width));
    }
  });
}

} // namespace roi_ops
