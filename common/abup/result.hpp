// Errors are values: every fallible function returns Result<T>, carrying either the value or an
// Error whose message says what failed, where, and (when known) what the user can do.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace abup {

// Broad classes, so callers (CLI exit codes, AKS status codes) can react without parsing text.
enum class Errc {
  failed = 1,     // generic
  io,             // a read/write/open on a local file or device failed
  invalid_input,  // malformed data: image, manifest, config, CLI argument
  not_found,
  untrusted,  // signature, keyring, digest mismatch
  policy,     // refused by version/arch/expiry/downgrade policy
  network,    // transport failed (may be transient)
  refused,    // a safety rule forbids it (booted slot, mounted target, ...)
  cancelled,
  usage,  // a bad command line or configuration: the caller must change how abup is invoked
};

struct [[nodiscard]] Error {
  Errc code = Errc::failed;
  std::string message;

  // Prefixes what was being done: "stage usr-b: " + "read frame 3: short read".
  [[nodiscard]] Error with_context(const std::string& what) && {
    message = what + ": " + message;
    return std::move(*this);
  }
  [[nodiscard]] Error with_context(const std::string& what) const& {
    return Error{code, what + ": " + message};
  }
};

[[nodiscard]] inline Error make_error(Errc code, std::string message) {
  return Error{code, std::move(message)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  [[nodiscard]] bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    assert(has_value());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& {
    assert(!has_value());
    return std::get<1>(v_);
  }
  Error&& error() && {
    assert(!has_value());
    return std::get<1>(std::move(v_));
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  [[nodiscard]] bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& {
    assert(!ok_);
    return error_;
  }
  Error&& error() && {
    assert(!ok_);
    return std::move(error_);
  }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace abup

#define ABUP_CONCAT_INNER(a, b) a##b
#define ABUP_CONCAT(a, b) ABUP_CONCAT_INNER(a, b)

// ABUP_TRY(auto x, f()): binds the value of f() to x, or returns its error from the caller.
#define ABUP_TRY(decl, expr) ABUP_TRY_IMPL(ABUP_CONCAT(abup_try_, __LINE__), decl, expr)
#define ABUP_TRY_IMPL(tmp, decl, expr)     \
  auto tmp = (expr);                       \
  if (!tmp) return std::move(tmp).error(); \
  decl = std::move(*tmp)

// ABUP_CHECK(f()): returns f()'s error from the caller; for Status-returning calls.
#define ABUP_CHECK(expr) ABUP_CHECK_IMPL(ABUP_CONCAT(abup_chk_, __LINE__), expr)
#define ABUP_CHECK_IMPL(tmp, expr)           \
  do {                                       \
    auto tmp = (expr);                       \
    if (!tmp) return std::move(tmp).error(); \
  } while (0)

// ABUP_CHECK_CTX(f(), "what"): as ABUP_CHECK, prefixing the error with context.
#define ABUP_CHECK_CTX(expr, ctx) ABUP_CHECK_CTX_IMPL(ABUP_CONCAT(abup_chkc_, __LINE__), expr, ctx)
#define ABUP_CHECK_CTX_IMPL(tmp, expr, ctx)                    \
  do {                                                         \
    auto tmp = (expr);                                         \
    if (!tmp) return std::move(tmp).error().with_context(ctx); \
  } while (0)
