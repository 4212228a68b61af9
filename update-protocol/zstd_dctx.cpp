#include "update-protocol/zstd_dctx.hpp"

#include <zstd.h>

#include <string>

namespace abup::protocol {

void ZstdDCtxFree::operator()(ZSTD_DCtx_s* d) const noexcept {
  ZSTD_freeDCtx(d);
}

Result<ZstdDCtx> make_capped_dctx(int window_log_max) {
  ZstdDCtx d(ZSTD_createDCtx());
  if (!d) return make_error(Errc::failed, "zstd: cannot allocate a decoder (out of memory)");
  if (auto r = ZSTD_DCtx_setParameter(d.get(), ZSTD_d_windowLogMax, window_log_max);
      ZSTD_isError(r))
    return make_error(Errc::failed, "zstd: cannot cap the decoder's window at 2^" +
                                        std::to_string(window_log_max) + ": " +
                                        ZSTD_getErrorName(r));
  return d;
}

}  // namespace abup::protocol
