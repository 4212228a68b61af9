// Drives an sd-bus connection from a Boost.Asio io_context: waits on the bus fd for the events
// sd-bus asks for (sd_bus_get_events), arms a timer for its timeout (sd_bus_get_timeout, method
// call timeouts and the like), and runs sd_bus_process() until it has nothing left each time
// one fires. Everything runs on the io_context's thread.
#pragma once

#include <systemd/sd-bus.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>

#include "abup/result.hpp"

namespace abup::agent::dbus {

class AsioBus {
 public:
  // `on_error` is called once when processing fails (the bus went away); the driving stops.
  AsioBus(boost::asio::io_context& io, sd_bus* bus, std::function<void(const Error&)> on_error);
  ~AsioBus();
  AsioBus(const AsioBus&) = delete;
  AsioBus& operator=(const AsioBus&) = delete;

  // Starts driving; fails when the bus has no single pollable fd.
  [[nodiscard]] Status start();
  // Processes and re-arms on the loop's next turn: call after sending on the bus from outside
  // a process step (Server::set_wake), so queued messages are written.
  void kick();

 private:
  void step();
  void arm();

  boost::asio::io_context& io_;
  sd_bus* bus_;
  std::function<void(const Error&)> on_error_;
  boost::asio::posix::stream_descriptor fd_;
  boost::asio::steady_timer timer_;
  bool reading_ = false, writing_ = false, failed_ = false;
  std::shared_ptr<AsioBus*> self_;  // handlers hold a weak_ptr: none runs after destruction
};

}  // namespace abup::agent::dbus
