// The file calls Runner.Listener makes on its registration files, one command at a time,
// so tests can run them under preload.so (or in a hard-link root) and compare results.
//
// Usage: FileProbe <command> [args] [<command> [args] ...]
// A path argument that starts with "@root/" is taken relative to the runner root as the
// runner computes it (parent of the entry assembly's directory), like HostContext does.
// Each command prints one JSON line: {"op","ok":true,"value"} or
// {"op","ok":false,"error":<exception type>,"hresult":<int>}. A failed command does not
// stop the ones after it. Exit 0 unless the arguments are malformed (exit 2).
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

var held = new Dictionary<string, FileStream>();
var utf8WithBom = new UTF8Encoding(encoderShouldEmitUTF8Identifier: true);
var i = 0;

string Next(string op)
{
    if (i >= args.Length)
    {
        throw new UsageException($"{op} needs another argument");
    }
    var arg = args[i++];
    return arg.StartsWith("@root/") ? Path.Join(RunnerRoot(), arg["@root/".Length..]) : arg;
}

// actions/runner HostContext: bin = directory of the entry assembly, root = its parent.
static string RunnerRoot()
{
    var bin = Path.GetDirectoryName(Assembly.GetEntryAssembly()?.Location) ?? throw new InvalidOperationException("no entry assembly location");
    return Path.GetDirectoryName(bin) ?? throw new InvalidOperationException($"no parent of {bin}");
}

void Print(Dictionary<string, object?> line) => Console.WriteLine(JsonSerializer.Serialize(line));

while (i < args.Length)
{
    var op = args[i++];
    var line = new Dictionary<string, object?> { ["op"] = op };
    try
    {
        line["value"] = op switch
        {
            "exists" => File.Exists(Next(op)),
            "info-exists" => new FileInfo(Next(op)).Exists,
            "read-text" => File.ReadAllText(Next(op)),
            "read-bytes" => Convert.ToBase64String(File.ReadAllBytes(Next(op))),
            // What IOUtil.SaveObject does: UTF-8 with a BOM.
            "write-text" => Do(() => File.WriteAllText(Next(op), Next(op), utf8WithBom)),
            // What --jitconfig does with each decoded file.
            "write-bytes" => Do(() => File.WriteAllBytes(Next(op), Convert.FromBase64String(Next(op)))),
            "get-attributes" => File.GetAttributes(Next(op)).ToString(),
            "set-attributes" => Do(() => File.SetAttributes(Next(op), Enum.Parse<FileAttributes>(Next(op)))),
            "delete" => Do(() => File.Delete(Next(op))),
            "save-settings" => SaveSettings(Next(op), Next(op)),
            "lock" => Lock(Next(op)),
            "unlock" => Do(() => Unlock(Next(op))),
            "move" => Do(() => File.Move(Next(op), Next(op))),
            // File.Replace with a backup: link(destination, backup), then rename(source, destination).
            "replace" => Do(() => File.Replace(Next(op), Next(op), Next(op))),
            "set-mtime" => Do(() => File.SetLastWriteTimeUtc(Next(op), DateTime.Parse(Next(op)).ToUniversalTime())),
            "get-mtime" => File.GetLastWriteTimeUtc(Next(op)).ToString("o"),
            "paths" => Paths(),
            // Blocks until a line arrives on stdin: lets a test hold a probe mid-script.
            "wait" => Console.In.ReadLine() ?? "",
            "echo" => Next(op),
            _ => throw new UsageException($"unknown command {op}"),
        };
        line["ok"] = true;
    }
    catch (UsageException error)
    {
        Console.Error.WriteLine($"FileProbe: {error.Message}");
        return 2;
    }
    catch (Exception error)
    {
        line["ok"] = false;
        line["error"] = error.GetType().Name;
        line["hresult"] = error.HResult;
    }
    Print(line);
}
return 0;

static string Do(Action action)
{
    action();
    return "done";
}

// ConfigurationStore.SaveSettings: File.Exists -> IOUtil.DeleteFile (FileInfo: clear
// ReadOnly, Delete) -> IOUtil.SaveObject (File.WriteAllText, UTF-8 with BOM) ->
// File.SetAttributes(GetAttributes | Hidden).
string SaveSettings(string path, string json)
{
    if (File.Exists(path))
    {
        var info = new FileInfo(path);
        if (info.Exists)
        {
            if (info.Attributes.HasFlag(FileAttributes.ReadOnly))
            {
                info.Attributes &= ~FileAttributes.ReadOnly;
            }
            info.Delete();
        }
    }
    File.WriteAllText(path, json, utf8WithBom);
    File.SetAttributes(path, File.GetAttributes(path) | FileAttributes.Hidden);
    return "done";
}

// A FileStream with FileShare.None: on Unix an exclusive flock on the file it opened, so
// a second holder of the same file fails while another file of the same name does not.
string Lock(string path)
{
    held[path] = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
    return "locked";
}

void Unlock(string path)
{
    if (held.Remove(path, out var stream))
    {
        stream.Dispose();
    }
}

// What the host and the runtime report about where this program is.
static Dictionary<string, string?> Paths()
{
    return new Dictionary<string, string?>
    {
        ["baseDirectory"] = AppContext.BaseDirectory,
        ["processPath"] = Environment.ProcessPath,
        ["entryAssembly"] = Assembly.GetEntryAssembly()?.Location,
        ["runnerRoot"] = RunnerRoot(),
        ["runtimeDirectory"] = RuntimeEnvironment.GetRuntimeDirectory(),
        ["frameworkDescription"] = RuntimeInformation.FrameworkDescription,
    };
}

// A malformed command line: the test that wrote it is wrong, so the probe stops (exit 2).
sealed class UsageException(string message) : Exception(message);
