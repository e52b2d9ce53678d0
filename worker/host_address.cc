#include "worker/host_address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace peco::worker {

bool IsLoopbackHost(absl::string_view host) {
  host = absl::StripPrefix(absl::StripSuffix(host, "]"), "[");
  if (host == "localhost" || host == "::1") return true;
  in_addr v4;
  const std::string text(host);
  if (::inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  return false;
}

std::string HostOfTarget(absl::string_view target) {
  target = absl::StripPrefix(target, "dns:///");
  target = absl::StripPrefix(target, "ipv4:");
  target = absl::StripPrefix(target, "ipv6:");
  if (absl::StartsWith(target, "[")) {
    const size_t end = target.find(']');
    return std::string(end == absl::string_view::npos ? target : target.substr(0, end + 1));
  }
  const size_t colon = target.rfind(':');
  return std::string(colon == absl::string_view::npos ? target : target.substr(0, colon));
}

absl::StatusOr<std::string> LocalAddressToward(const std::string& host) {
  const std::string bare(absl::StripPrefix(absl::StripSuffix(host, "]"), "["));
  addrinfo hints;
  std::memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  // Any port: a datagram socket's connect() only chooses the route.
  if (const int rc = ::getaddrinfo(bare.c_str(), "9", &hints, &found); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve '", host, "': ", ::gai_strerror(rc)));
  }
  std::string local;
  for (addrinfo* a = found; a != nullptr && local.empty(); a = a->ai_next) {
    const int fd = ::socket(a->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_storage self;
    socklen_t length = sizeof(self);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &length) == 0) {
      char text[INET6_ADDRSTRLEN] = {0};
      const void* address =
          self.ss_family == AF_INET
              ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&self)->sin_addr)
              : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&self)->sin6_addr);
      if (::inet_ntop(self.ss_family, address, text, sizeof(text)) != nullptr) local = text;
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  if (local.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no route from this machine to '", host, "'"));
  }
  return local;
}

}  // namespace peco::worker
