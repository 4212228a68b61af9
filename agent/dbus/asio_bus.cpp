#include "agent/dbus/asio_bus.hpp"

#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <chrono>

#include "agent/dbus/bus.hpp"

namespace abup::agent::dbus {
namespace {

std::uint64_t monotonic_usec() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::uint64_t(ts.tv_sec) * 1000000u + std::uint64_t(ts.tv_nsec) / 1000u;
}

}  // namespace

AsioBus::AsioBus(boost::asio::io_context& io, sd_bus* bus,
                 std::function<void(const Error&)> on_error)
    : io_(io),
      bus_(bus),
      on_error_(std::move(on_error)),
      fd_(io),
      timer_(io),
      self_(std::make_shared<AsioBus*>(this)) {}

AsioBus::~AsioBus() {
  self_.reset();
  boost::system::error_code ec;
  timer_.cancel();
  fd_.cancel(ec);
  fd_.close(ec);  // our duplicate: the bus keeps its own fd
}

Status AsioBus::start() {
  int fd = sd_bus_get_fd(bus_);
  if (fd < 0) return bus_error("sd_bus_get_fd", fd);
  // A duplicate, so that closing the descriptor object never closes the bus's socket.
  int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup < 0) return bus_error("dup the bus fd", -errno);
  boost::system::error_code ec;
  fd_.assign(dup, ec);
  if (ec) {
    ::close(dup);
    return make_error(Errc::failed, "watch the bus fd: " + ec.message());
  }
  kick();
  return {};
}

void AsioBus::kick() {
  boost::asio::post(io_, [w = std::weak_ptr<AsioBus*>(self_)] {
    if (auto s = w.lock()) (*s)->step();
  });
}

void AsioBus::step() {
  if (failed_) return;
  for (;;) {
    int r = sd_bus_process(bus_, nullptr);
    if (r < 0) {
      failed_ = true;
      boost::system::error_code ec;
      timer_.cancel();
      fd_.cancel(ec);
      if (on_error_) on_error_(bus_error("D-Bus connection", r));
      return;
    }
    if (r == 0) break;
  }
  arm();
}

void AsioBus::arm() {
  const int events = sd_bus_get_events(bus_);
  if (events < 0) {
    failed_ = true;
    if (on_error_) on_error_(bus_error("D-Bus connection", events));
    return;
  }
  auto weak = std::weak_ptr<AsioBus*>(self_);
  if ((events & POLLIN) && !reading_) {
    reading_ = true;
    fd_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                   [weak](const boost::system::error_code& ec) {
                     auto s = weak.lock();
                     if (!s) return;
                     (*s)->reading_ = false;
                     if (ec != boost::asio::error::operation_aborted) (*s)->step();
                   });
  }
  if ((events & POLLOUT) && !writing_) {
    writing_ = true;
    fd_.async_wait(boost::asio::posix::stream_descriptor::wait_write,
                   [weak](const boost::system::error_code& ec) {
                     auto s = weak.lock();
                     if (!s) return;
                     (*s)->writing_ = false;
                     if (ec != boost::asio::error::operation_aborted) (*s)->step();
                   });
  }
  std::uint64_t until = 0;
  if (sd_bus_get_timeout(bus_, &until) >= 0 && until != UINT64_MAX) {
    const std::uint64_t now = monotonic_usec();
    timer_.expires_after(std::chrono::microseconds(until > now ? until - now : 0));
    timer_.async_wait([weak](const boost::system::error_code& ec) {
      auto s = weak.lock();
      if (s && ec != boost::asio::error::operation_aborted) (*s)->step();
    });
  } else {
    timer_.cancel();
  }
}

}  // namespace abup::agent::dbus
