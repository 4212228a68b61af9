// The one way abup makes a zstd decoder: its window capped before the first byte is decoded, and
// an allocation failure returned as an error rather than a null pointer used later.
#pragma once

#include <memory>

#include "abup/result.hpp"

struct ZSTD_DCtx_s;

namespace abup::protocol {

struct ZstdDCtxFree {
  void operator()(ZSTD_DCtx_s* d) const noexcept;
};
using ZstdDCtx = std::unique_ptr<ZSTD_DCtx_s, ZstdDCtxFree>;

// A decoder that refuses any frame whose window is larger than 2^window_log_max bytes (so a frame
// cannot make zstd allocate more than that before its signed hash is checked). Errc::failed when
// zstd cannot allocate the context.
[[nodiscard]] Result<ZstdDCtx> make_capped_dctx(int window_log_max);

// The largest window zstd allows (zstd --long=31): for abup-image, which reads images its
// operator brings. The agent caps windows lower (window_log_limit) before a frame's signed hash
// is checked.
inline constexpr int kAnyWindowLog = 31;

}  // namespace abup::protocol
