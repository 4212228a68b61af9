// The zstd decoder abup-image scans and unpacks COSI images with.
#pragma once

#include <zstd.h>

#include <memory>

namespace abup::image {

struct DCtxFree {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};
using DCtxPtr = std::unique_ptr<ZSTD_DCtx, DCtxFree>;

// Accepts the largest window zstd allows (31, zstd --long=31): abup-image reads images its
// operator brings, where the agent caps windows before a frame's signed hash is checked.
[[nodiscard]] inline DCtxPtr make_dctx() {
  DCtxPtr d(ZSTD_createDCtx());
  ZSTD_DCtx_setParameter(d.get(), ZSTD_d_windowLogMax, 31);
  return d;
}

}  // namespace abup::image
