#include "core/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>

#include "core/error.h"

extern char** environ;

namespace ctfgen::subprocess {
namespace subprocess_impl {

struct Fd {
  int fd = -1;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// Environment for the child: ours, with `add` entries replacing same-named ones.
std::vector<std::string> child_environment(const std::vector<std::string>& add) {
  std::vector<std::string> env;
  auto name_of = [](const std::string& e) { return e.substr(0, e.find('=')); };
  for (char** e = environ; e && *e; ++e) {
    std::string s(*e);
    bool replaced = false;
    for (const auto& a : add) replaced = replaced || name_of(a) == name_of(s);
    if (!replaced) env.push_back(s);
  }
  for (const auto& a : add) {
    CTFGEN_CHECK(a.find('=') != std::string::npos && a.front() != '=',
                 "subprocess: environment entry '", a, "' is not NAME=value");
    env.push_back(a);
  }
  return env;
}

double tv_seconds(const timeval& tv) { return tv.tv_sec + tv.tv_usec * 1e-6; }

}  // namespace subprocess_impl
using namespace subprocess_impl;

Result run(const std::vector<std::string>& argv, const std::vector<std::string>& env_add,
           double timeout_s) {
  CTFGEN_CHECK(!argv.empty() && !argv[0].empty(), "subprocess: empty command");
  // Everything the child needs is built before fork(): between fork and exec only
  // async-signal-safe calls are allowed (the parent has OpenMP and libtorch threads).
  std::vector<std::string> env = child_environment(env_add);
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  const bool search_path = argv[0].find('/') == std::string::npos;

  int out_pipe[2], err_pipe[2], exec_pipe[2];
  CTFGEN_CHECK(::pipe2(out_pipe, O_CLOEXEC) == 0 && ::pipe2(err_pipe, O_CLOEXEC) == 0 &&
                   ::pipe2(exec_pipe, O_CLOEXEC) == 0,
               "subprocess: pipe failed: ", std::strerror(errno));
  Fd out_r{out_pipe[0]}, out_w{out_pipe[1]}, err_r{err_pipe[0]}, err_w{err_pipe[1]},
      exec_r{exec_pipe[0]}, exec_w{exec_pipe[1]};
  const auto t0 = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  CTFGEN_CHECK(pid >= 0, "subprocess: fork failed: ", std::strerror(errno));
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    if (search_path) {
      environ = cenv.data();
      ::execvp(cargv[0], cargv.data());
    } else {
      ::execve(cargv[0], cargv.data(), cenv.data());
    }
    int e = errno;  // exec failed: report errno through the close-on-exec pipe
    ssize_t ignored = ::write(exec_pipe[1], &e, sizeof e);
    (void)ignored;
    ::_exit(127);
  }
  out_w.reset();
  err_w.reset();
  exec_w.reset();
  int exec_errno = 0;
  ssize_t got = ::read(exec_r.fd, &exec_errno, sizeof exec_errno);  // EOF on successful exec
  if (got == static_cast<ssize_t>(sizeof exec_errno)) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    throw Error(str_cat("subprocess: cannot run '", argv[0], "': ", std::strerror(exec_errno)));
  }

  Result r;
  bool killed = false;
  pollfd fds[2] = {{out_r.fd, POLLIN, 0}, {err_r.fd, POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  char buf[65536];
  int open_count = 2;
  while (open_count > 0) {
    int wait_ms = -1;
    if (timeout_s > 0 && !killed) {
      double left = timeout_s - std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (left <= 0) {
        ::kill(pid, SIGKILL);
        killed = true;
      } else {
        wait_ms = static_cast<int>(std::min(left * 1000.0 + 1.0, double(INT_MAX)));
      }
    }
    int n = ::poll(fds, 2, wait_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t k = ::read(fds[i].fd, buf, sizeof buf);
      if (k > 0) {
        sinks[i]->append(buf, static_cast<size_t>(k));
      } else if (k == 0 || (errno != EINTR && errno != EAGAIN)) {
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  int status = 0;
  rusage ru{};
  while (::wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.timed_out = killed;
  if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.term_signal = WTERMSIG(status);
  }
  r.max_rss_kib = ru.ru_maxrss;  // Linux: KiB
  r.user_s = tv_seconds(ru.ru_utime);
  r.sys_s = tv_seconds(ru.ru_stime);
  return r;
}

std::string self_exe() {
  char buf[PATH_MAX + 1];
  ssize_t n = ::readlink("/proc/self/exe", buf, PATH_MAX);
  CTFGEN_CHECK(n > 0, "subprocess: cannot read /proc/self/exe: ", std::strerror(errno));
  return std::string(buf, static_cast<size_t>(n));
}

std::string tail(const std::string& text, size_t max_chars) {
  if (text.size() <= max_chars) return text;
  return "..." + text.substr(text.size() - max_chars);
}

}  // namespace ctfgen::subprocess
