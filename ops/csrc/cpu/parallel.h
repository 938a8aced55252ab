// Parallel loop of the CPU deterministic (gather) backward kernels.
#pragma once

#include <ATen/Parallel.h>

#include <cstdint>

#include "../roi_geometry.h"

namespace roi_ops {

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
