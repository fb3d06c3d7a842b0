/* The pod sandbox process: holds the pod's namespaces and reaps orphans (it is PID 1 when the pod shares its process namespace); exits on SIGINT/SIGTERM.
 * Built static into the pause image (hack/node/build.sh) since no public registry is reachable. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void leave(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }

int main(void) {
  signal(SIGINT, leave);
  signal(SIGTERM, leave);
  signal(SIGCHLD, reap);
  for (;;) pause();
}
