"""The command server the `cli` fixture starts: it imports gantrain and its heavy dependencies once, then forks one
child per request, and each child runs one console command or `python ARGV` as a real process of its own.

Protocol (one JSON object a line on stdin, one reply a line on stdout): {"argv", "cwd", "env", "stdout", "stderr"}
starts a command and answers its pid; {"wait": pid, "timeout": s} answers its exit status, or null on timeout.
When stdin closes, the children still running are killed and the server exits.
"""
import gc
import importlib
import importlib.metadata
import importlib.util
import json
import os
import runpy
import select
import shutil
import signal
import sys
import time

sys.path[0] = ""  # as under `python -c`: the working directory first, not this folder

# sklearn.datasets: gantrain no longer imports it, but without it here the DataLoader workers of a preset trained
# earlier in one forked process took 30 s to shut down when collected (tests/unit/config/test_configs.py)
for name in ("gantrain.cli", "sklearn.datasets", "tensorboard.backend.event_processing.event_accumulator"):
    try:  # warm-up only: a command imports whatever it needs itself
        importlib.import_module(name)
    except ImportError:
        pass
# the config files parsed once, here, for every child (support/yaml_memo.py)
memo_spec = importlib.util.spec_from_file_location("yaml_memo", os.path.join(os.path.dirname(__file__), "yaml_memo.py"))
yaml_memo = importlib.util.module_from_spec(memo_spec)
memo_spec.loader.exec_module(yaml_memo)
yaml_memo.install()
yaml_memo.parse_packaged_configs("gantrain.configs", "hydra.conf", "gantrain.cli.configs")
del memo_spec, yaml_memo
gc.collect()
gc.freeze()  # the children's garbage collector (and exit) skip what is shared: their exit takes 0.4 s instead of 1.4 s

channel = os.fdopen(os.dup(1), "w", buffering=1)
children = set()
for line in sys.stdin:
    request = json.loads(line)
    if "wait" in request:
        pid, deadline = request["wait"], time.monotonic() + request["timeout"]
        try:
            ended = os.pidfd_open(pid)  # readable once the child ends: waiting without polling
        except (AttributeError, OSError):
            ended = None
        done, status = os.waitpid(pid, os.WNOHANG)
        while not done and time.monotonic() < deadline:
            if ended is None:
                time.sleep(0.005)
            else:
                select.select([ended], [], [], max(0.0, deadline - time.monotonic()))
            done, status = os.waitpid(pid, os.WNOHANG)
        if ended is not None:
            os.close(ended)
        if done:
            children.discard(pid)
        channel.write(json.dumps(os.waitstatus_to_exitcode(status) if done else None) + "\n")
        continue
    pid = os.fork()
    if pid == 0:
        break
    children.add(pid)
    channel.write(json.dumps(pid) + "\n")
else:  # the session is over: end what is still running
    for pid in children:
        try:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    sys.exit(0)

# ---- the child: one command
os.setpgid(0, 0)  # its own process group, so that a timeout ends its workers too
channel.close()
for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                        (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
    opened = os.open(path, flags, 0o644)
    os.dup2(opened, fd)
    os.close(opened)
os.chdir(request["cwd"])
os.environ.clear()
os.environ.update(request["env"])
sys.path[1:1] = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
argv = request["argv"]
del line, request, children, pid, channel
if argv[0] == "-c":  # python -c CODE ARGS
    sys.argv = ["-c", *argv[2:]]
    exec(compile(argv[1], "<string>", "exec"), globals())
elif argv[0] == "-m":  # python -m MODULE ARGS
    sys.argv = [argv[1], *argv[2:]]
    sys.path[0] = os.getcwd()
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
elif argv[0].endswith(".py"):  # python SCRIPT ARGS
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
    runpy.run_path(argv[0], run_name="__main__")
else:  # a console script, as the wrapper pip installed runs it
    (entry,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == argv[0]]
    sys.argv = [shutil.which(argv[0]) or argv[0], *argv[1:]]
    sys.exit(entry.load()())
