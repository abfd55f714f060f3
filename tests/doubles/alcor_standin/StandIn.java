// TEST DOUBLE -- NOT ALCOR. A stand-in for one Alcor microservice (or Ignite), used only by
// distrilab's tests because Alcor's jars cannot be built on the test machine. It is started
// exactly like a Spring Boot service jar (`java -jar x.jar --server.port=N --key=value ...`) and:
//   - collects the configuration it was given (command-line --key=value, property files named by
//     --spring.config.location / --spring.config.additional-location) and serves it at
//     GET /standin/info together with its start time,
//   - answers GET /actuator/health with {"status":"UP"} (or 503 DOWN when the property
//     standin.healthy=false: a service that never becomes healthy),
//   - records every request it receives (GET /standin/calls),
//   - mimics the two post-deploy endpoints distrilab calls: the VPC manager's
//     POST /segments/createDefaultTable (409 on the second call, as Alcor does) and the node
//     manager's POST /nodes, GET /nodes, GET|PUT|DELETE /nodes/{id} (bodies {"host_info": {...}}),
//     with the node manager's answers (see route()),
//   - refuses to start as Alcor's services do without a usable Ignite (checkIgnite()).
// Everything is kept in memory.

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.Executors;

public final class StandIn {
    private static final Map<String, String> PROPS = new TreeMap<>();
    private static final List<String> ARGS = new ArrayList<>();
    private static final List<Object> CALLS = new ArrayList<>();
    private static final Map<String, Object> NODES = new LinkedHashMap<>();
    private static boolean segmentTable = false;
    private static long startedAt;

    public static void main(String[] args) throws IOException {
        startedAt = System.currentTimeMillis();
        for (String arg : args) {
            ARGS.add(arg);
            if (arg.startsWith("--") && arg.contains("=")) {
                int eq = arg.indexOf('=');
                PROPS.put(arg.substring(2, eq), arg.substring(eq + 1));
            }
        }
        for (String key : new String[] {"spring.config.location", "spring.config.additional-location"}) {
            String value = PROPS.get(key);
            if (value != null) {
                for (String part : value.split(",")) {
                    loadProperties(part.trim());
                }
            }
        }
        // command-line arguments win over property files, as in Spring Boot
        for (String arg : args) {
            if (arg.startsWith("--") && arg.contains("=")) {
                int eq = arg.indexOf('=');
                PROPS.put(arg.substring(2, eq), arg.substring(eq + 1));
            }
        }
        checkIgnite();
        int port = Integer.parseInt(PROPS.getOrDefault("server.port", "8080"));
        HttpServer server = HttpServer.create(new InetSocketAddress(port), 64);
        server.createContext("/", StandIn::handle);
        server.setExecutor(Executors.newFixedThreadPool(4));
        server.start();
        System.out.println("standin: TEST DOUBLE listening on " + port + " properties=" + Json.write(PROPS));
        if ("false".equals(PROPS.get("standin.healthy"))) {
            System.err.println("standin: told to stay unhealthy (standin.healthy=false)");
        }
    }

    /**
     * What Alcor's services do with Ignite at start-up, read from futurewei-cloud/alcor 21f11b5,
     * lib/src/main/java/com/futurewei/alcor/common/db/ignite/IgniteConfiguration.java:
     * the bean exists when ignite.host is set (@ConditionalOnProperty, L48; every service's own
     * application.properties sets ignite.host=localhost, ignite.port=10800,
     * ignite.thin.client.enable=true, which a jar keeps unless spring.config.location replaces its
     * file); ignite.port has no default (L65: Spring refuses to start); the thin client connects
     * to host:port only when ignite.host is the literal "localhost", any other value takes the
     * Kubernetes address finder (L104-119), which outside Kubernetes leaves the client null:
     * Assert.notNull(igniteClient, "IgniteClient is null") (L116). The Ignite stand-in itself
     * (kind ignite, no Spring properties) skips this.
     */
    private static void checkIgnite() {
        Map<String, String> effective = new TreeMap<>();
        if (!PROPS.containsKey("spring.config.location")) {
            effective.put("ignite.host", "localhost");
            effective.put("ignite.port", "10800");
            effective.put("ignite.thin.client.enable", "true");
        }
        for (String key : new String[] {"ignite.host", "ignite.port", "ignite.thin.client.enable"}) {
            if (PROPS.containsKey(key)) {
                effective.put(key, PROPS.get(key));
            }
        }
        String host = effective.get("ignite.host");
        if (host == null || jarName().startsWith("ignite")) {
            return;  // no Ignite bean, or this is the Ignite stand-in (ignite-standin.jar)
        }
        String port = effective.get("ignite.port");
        if (port == null) {
            die("Could not resolve placeholder 'ignite.port' in value \"${ignite.port}\"");
        }
        // @Value("${ignite.thin.client.enable: #{true}}"): the thin client unless told otherwise
        boolean thin = !"false".equals(effective.getOrDefault("ignite.thin.client.enable", "true").trim());
        if (thin && !host.equals("localhost")) {
            die("Start client failed: Kubernetes address finder (ignite.host is '" + host
                + "', not 'localhost'); IgniteClient is null");
        }
        long wait = Long.parseLong(PROPS.getOrDefault("standin.ignite.wait", "120").trim());
        long deadline = System.currentTimeMillis() + 1000L * wait;
        String last = "";
        while (System.currentTimeMillis() < deadline) {
            try (java.net.Socket socket = new java.net.Socket()) {
                socket.connect(new InetSocketAddress(host, Integer.parseInt(port.trim())), 2000);
                System.out.println("standin: Ignite answers at " + host + ":" + port.trim());
                return;
            } catch (IOException err) {
                last = String.valueOf(err.getMessage());
            }
            try {
                Thread.sleep(1000);
            } catch (InterruptedException err) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        die("Start client failed: " + host + ":" + port.trim() + ": " + last + "; IgniteClient is null");
    }

    /** The file name this jar runs under (the stand-in is installed under each service's jar name). */
    private static String jarName() {
        try {
            return Path.of(StandIn.class.getProtectionDomain().getCodeSource().getLocation().toURI())
                .getFileName().toString();
        } catch (Exception err) {
            return "";
        }
    }

    private static void die(String message) {
        System.err.println("standin: APPLICATION FAILED TO START: " + message);
        System.exit(1);
    }

    private static void loadProperties(String location) throws IOException {
        String path = location;
        for (String prefix : new String[] {"optional:", "file:"}) {
            if (path.startsWith(prefix)) {
                path = path.substring(prefix.length());
            }
        }
        Path p = Path.of(path);
        if (Files.isDirectory(p)) {
            p = p.resolve("application.properties");
        }
        if (!Files.isRegularFile(p)) {
            System.out.println("standin: no property file at " + p);
            return;
        }
        Properties props = new Properties();
        try (InputStream in = Files.newInputStream(p)) {
            props.load(in);
        }
        for (String name : props.stringPropertyNames()) {
            PROPS.put(name, props.getProperty(name).trim());
        }
    }

    private static void handle(HttpExchange ex) throws IOException {
        String method = ex.getRequestMethod();
        String path = ex.getRequestURI().getPath();
        String body = new String(ex.getRequestBody().readAllBytes(), StandardCharsets.UTF_8);
        synchronized (StandIn.class) {
            if (!path.startsWith("/standin/") && !path.equals("/actuator/health")) {
                Map<String, Object> call = new LinkedHashMap<>();
                call.put("method", method);
                call.put("path", path);
                call.put("body", body);
                call.put("at", System.currentTimeMillis());
                CALLS.add(call);
            }
            try {
                route(ex, method, path, body);
            } catch (RuntimeException err) {
                reply(ex, 400, "{\"message\":" + Json.quote(String.valueOf(err.getMessage())) + "}");
            }
        }
    }

    private static void route(HttpExchange ex, String method, String path, String body) throws IOException {
        if (path.equals("/actuator/health")) {
            boolean healthy = !"false".equals(PROPS.get("standin.healthy"));
            reply(ex, healthy ? 200 : 503, healthy ? "{\"status\":\"UP\"}" : "{\"status\":\"DOWN\"}");
        } else if (path.equals("/standin/info")) {
            Map<String, Object> info = new LinkedHashMap<>();
            info.put("standin", true);
            info.put("started_at", startedAt);
            info.put("args", ARGS);
            info.put("properties", PROPS);
            reply(ex, 200, Json.write(info));
        } else if (path.equals("/standin/calls")) {
            reply(ex, 200, Json.write(CALLS));
        } else if (path.equals("/segments/createDefaultTable") && method.equals("POST")) {
            if (segmentTable) {
                // a second call: VxlanRangeRepository.createRange throws NetworkRangeExistException,
                // @ResponseStatus(CONFLICT, reason="network range already exists")
                springError(ex, 409, "Conflict", "network range already exists", path);
            } else {
                segmentTable = true;
                reply(ex, 200, "");
            }
        } else if (path.equals("/nodes") && method.equals("POST")) {
            // NodeServiceImpl.createNodeInfo: an existing id is replaced, silently (201)
            Map<?, ?> info = hostInfo(body);
            NODES.put(String.valueOf(info.get("node_id")), info);
            reply(ex, 201, Json.write(Map.of("host_info", info)));
        } else if (path.equals("/nodes") && method.equals("GET")) {
            reply(ex, 200, Json.write(Map.of("nodeInfos", new ArrayList<>(NODES.values()))));
        } else if (path.startsWith("/nodes/")) {
            // NodeController: GET of a missing node is 200 {"host_info":null}; PUT/DELETE of one
            // throw ParameterNullOrEmptyException, unmapped in the node manager: 500
            String id = path.substring("/nodes/".length());
            Object node = NODES.get(id);
            if (method.equals("GET")) {
                reply(ex, 200, node == null ? "{\"host_info\":null}" : Json.write(Map.of("host_info", node)));
            } else if (!method.equals("PUT") && !method.equals("DELETE")) {
                springError(ex, 405, "Method Not Allowed", "Request method '" + method + "' not supported", path);
            } else if (node == null) {
                springError(ex, 500, "Internal Server Error", "Node not existing", path);
            } else if (method.equals("PUT")) {
                Map<?, ?> info = hostInfo(body);
                if (!id.equals(String.valueOf(info.get("node_id")))) {  // verifyParameterValid
                    springError(ex, 500, "Internal Server Error", "node id in the body is not " + id, path);
                    return;
                }
                NODES.put(id, info);
                reply(ex, 200, Json.write(Map.of("host_info", info)));
            } else {
                NODES.remove(id);
                reply(ex, 200, "{Node(Node) Id: " + id + "}");
            }
        } else {
            reply(ex, 404, "{\"message\":\"stand-in does not serve " + method + " " + path + "\"}");
        }
    }

    /** Spring Boot 2.1's default error body. */
    private static void springError(HttpExchange ex, int status, String error, String message, String path)
            throws IOException {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("timestamp", java.time.Instant.now().toString());
        body.put("status", status);
        body.put("error", error);
        body.put("message", message);
        body.put("path", path);
        reply(ex, status, Json.write(body));
    }

    private static Map<?, ?> hostInfo(String body) {
        Object parsed = new Json(body).value();
        if (!(parsed instanceof Map) || !(((Map<?, ?>) parsed).get("host_info") instanceof Map)) {
            throw new IllegalArgumentException("body must be {\"host_info\": {...}}");
        }
        return (Map<?, ?>) ((Map<?, ?>) parsed).get("host_info");
    }

    private static void reply(HttpExchange ex, int status, String text) throws IOException {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(status, bytes.length == 0 ? -1 : bytes.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(bytes);
        }
    }

    /** A minimal JSON reader/writer (objects, arrays, strings, numbers, booleans, null). */
    static final class Json {
        private final String s;
        private int i;

        Json(String text) {
            this.s = text;
        }

        Object value() {
            skip();
            if (i >= s.length()) {
                throw new IllegalArgumentException("unexpected end of JSON");
            }
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> map = new LinkedHashMap<>();
                i++;
                skip();
                if (s.charAt(i) == '}') {
                    i++;
                    return map;
                }
                while (true) {
                    skip();
                    String key = string();
                    skip();
                    expect(':');
                    map.put(key, value());
                    skip();
                    if (s.charAt(i) == ',') {
                        i++;
                    } else {
                        expect('}');
                        return map;
                    }
                }
            }
            if (c == '[') {
                List<Object> list = new ArrayList<>();
                i++;
                skip();
                if (s.charAt(i) == ']') {
                    i++;
                    return list;
                }
                while (true) {
                    list.add(value());
                    skip();
                    if (s.charAt(i) == ',') {
                        i++;
                    } else {
                        expect(']');
                        return list;
                    }
                }
            }
            if (c == '"') {
                return string();
            }
            for (String word : new String[] {"true", "false", "null"}) {
                if (s.startsWith(word, i)) {
                    i += word.length();
                    return word.equals("null") ? null : Boolean.valueOf(word);
                }
            }
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) {
                i++;
            }
            String num = s.substring(start, i);
            if (num.isEmpty()) {
                throw new IllegalArgumentException("bad JSON at offset " + start);
            }
            return num.contains(".") || num.contains("e") || num.contains("E")
                    ? (Object) Double.valueOf(num) : (Object) Long.valueOf(num);
        }

        private String string() {
            expect('"');
            StringBuilder out = new StringBuilder();
            while (s.charAt(i) != '"') {
                char c = s.charAt(i++);
                if (c == '\\') {
                    char e = s.charAt(i++);
                    switch (e) {
                        case 'n': out.append('\n'); break;
                        case 't': out.append('\t'); break;
                        case 'r': out.append('\r'); break;
                        case 'b': out.append('\b'); break;
                        case 'f': out.append('\f'); break;
                        case 'u': out.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; break;
                        default: out.append(e);
                    }
                } else {
                    out.append(c);
                }
            }
            i++;
            return out.toString();
        }

        private void skip() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
                i++;
            }
        }

        private void expect(char c) {
            if (i >= s.length() || s.charAt(i) != c) {
                throw new IllegalArgumentException("expected '" + c + "' at offset " + i);
            }
            i++;
        }

        static String quote(String text) {
            StringBuilder out = new StringBuilder("\"");
            for (char c : text.toCharArray()) {
                if (c == '"' || c == '\\') {
                    out.append('\\').append(c);
                } else if (c < 0x20) {
                    out.append(String.format("\\u%04x", (int) c));
                } else {
                    out.append(c);
                }
            }
            return out.append('"').toString();
        }

        static String write(Object v) {
            if (v == null) {
                return "null";
            }
            if (v instanceof String) {
                return quote((String) v);
            }
            if (v instanceof Number || v instanceof Boolean) {
                return String.valueOf(v);
            }
            if (v instanceof Map) {
                StringBuilder out = new StringBuilder("{");
                for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                    if (out.length() > 1) {
                        out.append(',');
                    }
                    out.append(quote(String.valueOf(e.getKey()))).append(':').append(write(e.getValue()));
                }
                return out.append('}').toString();
            }
            if (v instanceof List) {
                StringBuilder out = new StringBuilder("[");
                for (Object item : (List<?>) v) {
                    if (out.length() > 1) {
                        out.append(',');
                    }
                    out.append(write(item));
                }
                return out.append(']').toString();
            }
            return quote(String.valueOf(v));
        }
    }
}
