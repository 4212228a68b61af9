#include "abup/digest.hpp"

#include <openssl/evp.h>
#include <xxhash.h>

#include <cstdlib>

namespace abup {

struct Sha2::Impl {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const EVP_MD* md = nullptr;
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

Sha2::Sha2(Kind kind) : impl_(std::make_unique<Impl>()), kind_(kind) {
  impl_->md = kind == Kind::sha256 ? EVP_sha256() : EVP_sha384();
  if (!impl_->ctx || EVP_DigestInit_ex(impl_->ctx, impl_->md, nullptr) != 1) std::abort();
}
Sha2::~Sha2() = default;

void Sha2::update(std::span<const std::uint8_t> data) {
  if (EVP_DigestUpdate(impl_->ctx, data.data(), data.size()) != 1) std::abort();
}
void Sha2::update(std::string_view data) {
  update(as_bytes(data));
}

void Sha2::finish(std::span<std::uint8_t> out) {
  unsigned len = 0;
  if (out.size() != (kind_ == Kind::sha256 ? 32u : 48u) ||
      EVP_DigestFinal_ex(impl_->ctx, out.data(), &len) != 1 ||
      EVP_DigestInit_ex(impl_->ctx, impl_->md, nullptr) != 1)
    std::abort();
}

void Sha2::peek(std::span<std::uint8_t> out) const {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> copy(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  unsigned len = 0;
  if (!copy || out.size() != (kind_ == Kind::sha256 ? 32u : 48u) ||
      EVP_MD_CTX_copy_ex(copy.get(), impl_->ctx) != 1 ||
      EVP_DigestFinal_ex(copy.get(), out.data(), &len) != 1)
    std::abort();
}

Sha256 sha256(std::span<const std::uint8_t> data) {
  Sha256 out;
  unsigned len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1)
    std::abort();
  return out;
}

Sha384 sha384(std::span<const std::uint8_t> data) {
  Sha384 out;
  unsigned len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha384(), nullptr) != 1)
    std::abort();
  return out;
}

static Xxh128 canonical(XXH128_hash_t h) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  Xxh128 out;
  for (size_t i = 0; i < out.size(); ++i) out[i] = c.digest[i];
  return out;
}

Xxh128 xxh128(std::span<const std::uint8_t> data) {
  return canonical(XXH3_128bits(data.data(), data.size()));
}

Xxh128Stream::Xxh128Stream() : state_(XXH3_createState()) {
  if (!state_ || XXH3_128bits_reset(static_cast<XXH3_state_t*>(state_)) != XXH_OK) std::abort();
}
Xxh128Stream::~Xxh128Stream() {
  XXH3_freeState(static_cast<XXH3_state_t*>(state_));
}
void Xxh128Stream::update(std::span<const std::uint8_t> data) {
  XXH3_128bits_update(static_cast<XXH3_state_t*>(state_), data.data(), data.size());
}
Xxh128 Xxh128Stream::finish() const {
  return canonical(XXH3_128bits_digest(static_cast<XXH3_state_t*>(state_)));
}

}  // namespace abup
