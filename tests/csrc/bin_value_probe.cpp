// Pools one feature plane with roi_geometry.h's bin_value, the way the CUDA
// forward calls it (sample rows and columns computed on the spot), so that a
// CPU test can check the code the GPU runs. Reads from stdin:
//   height width  then height*width values (row-major)
//   spatial_scale pooled_h pooled_w sampling_ratio box_mode max_mode
//   num_boxes  then num_boxes rows of x1 y1 x2 y2
// and prints, per box, its pooled_h*pooled_w bin values (%.17g, one per line).
#include "roi_geometry.h"

#include <cmath>
#include <cstdio>
#include <vector>

using roi_ops::AxisSample;
using roi_ops::BilinearBox;

int main() {
  long long height = 0, width = 0;
  if (std::scanf("%lld %lld", &height, &width) != 2) return 2;
  // The plane sits between two guards of NaN, so that a read outside it
  // shows in the output instead of passing unnoticed.
  const long long cells = height * width, guard = 1024;
  std::vector<double> memory(cells + 2 * guard, std::nan(""));
  double* plane = memory.data() + guard;
  for (long long i = 0; i < cells; ++i) {
    if (std::scanf("%lf", &plane[i]) != 1) return 2;
  }
  double scale = 1;
  long long ph = 1, pw = 1, sampling = 0, box_mode = 0, max_mode = 0, num = 0;
  if (std::scanf("%lf %lld %lld %lld %lld %lld %lld", &scale, &ph, &pw, &sampling, &box_mode,
                 &max_mode, &num) != 7) {
    return 2;
  }
  for (long long k = 0; k < num; ++k) {
    double roi[5] = {0, 0, 0, 0, 0};
    if (std::scanf("%lf %lf %lf %lf", &roi[1], &roi[2], &roi[3], &roi[4]) != 4) return 2;
    const BilinearBox<double> b =
        roi_ops::make_bilinear_box(roi, scale, ph, pw, sampling, box_mode);
    for (int y = 0; y < ph; ++y) {
      for (int x = 0; x < pw; ++x) {
        auto row = [&](int iy) -> AxisSample<double> {
          return roi_ops::axis_sample(
              roi_ops::sample_coord(b.start_h, b.bin_h, y, iy, b.grid_h), height);
        };
        auto col = [&](int ix) -> AxisSample<double> {
          return roi_ops::axis_sample(
              roi_ops::sample_coord(b.start_w, b.bin_w, x, ix, b.grid_w), width);
        };
        std::printf("%.17g\n", roi_ops::bin_value(plane, width, b, max_mode != 0, row, col));
      }
    }
  }
  return 0;
}
