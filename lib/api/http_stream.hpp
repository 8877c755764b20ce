// coapgw::api::http_stream — the pieces of one HTTP/1.1 server connection
// that the admin listener and the backend API do the same way: a request
// parser bounded in bytes, a hard close, and the lingering close after a
// final answer. Private to lib/api and lib/admin (Beast).
#pragma once

#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>

namespace coapgw::api::http_stream {

using Parser = boost::beast::http::request_parser<boost::beast::http::string_body>;

// At most this much is read and dropped by linger().
inline constexpr std::size_t max_drain_bytes = 64 * 1024;

// A fresh parser whose header and body may each be at most `limit` bytes.
void reset_parser(std::optional<Parser>& parser, std::size_t limit);

// Shuts the socket down both ways and closes it; errors are ignored.
void close(boost::beast::tcp_stream& stream);

// After a final answer: shuts our sending side, then reads and drops what
// the client still sends (max_drain_bytes, for at most `time`) and calls
// `done`, so that closing with unread request bytes does not reset the
// connection before the client has read the answer. `done` should keep the
// owner of `stream` alive and close it.
void linger(boost::beast::tcp_stream& stream, std::chrono::milliseconds time, std::function<void()> done);

}  // namespace coapgw::api::http_stream
