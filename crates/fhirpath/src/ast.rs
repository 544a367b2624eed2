//! The compiled form of an expression: a tree whose function calls and operators are already
//! resolved to enums (with arity checked) and whose literals are already typed values, so that
//! evaluation never looks a name up again.

use crate::decimal::Decimal;
use crate::temporal::Temporal;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

/// A type name as written after `is`, `as`, `ofType(...)`: `Quantity`, `FHIR.string`,
/// `System.Integer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeSpec {
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Clone, Debug)]
pub enum Literal {
    Bool(bool),
    Int(i64),
    Long(i64),
    Dec(Decimal),
    Str(String),
    Date(Temporal),
    DateTime(Temporal),
    Time(Temporal),
    /// A quantity literal: value and unit (a UCUM code or a calendar keyword such as `day`).
    Quantity(Decimal, String),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: NodeKind,
    /// Byte offset of the node in the expression text.
    pub pos: usize,
    /// The height of the tree under this node (a leaf is 1), bounded by the parser so that
    /// evaluating and dropping a tree never exhausts the stack.
    pub height: u32,
}

impl Node {
    pub fn new(kind: NodeKind, pos: usize) -> Node {
        let child = |n: &Option<Box<Node>>| n.as_ref().map_or(0, |n| n.height);
        let below = match &kind {
            NodeKind::Member(target, _) => child(target),
            NodeKind::Call { target, args, .. } => {
                child(target).max(args.iter().map(|a| a.height).max().unwrap_or(0))
            }
            NodeKind::TypeOp { target, .. } => child(target),
            NodeKind::Index(a, b) | NodeKind::Bin(_, a, b) => a.height.max(b.height),
            NodeKind::Neg(a) => a.height,
            _ => 0,
        };
        Node {
            kind,
            pos,
            height: below + 1,
        }
    }
}

#[derive(Clone, Debug)]
pub enum NodeKind {
    /// `{}`
    Empty,
    Lit(Literal),
    /// An identifier at the start of an expression or after `.`; `target` is what it is
    /// applied to (`None`: the focus).
    Member(Option<Box<Node>>, String),
    /// A type name as the first step (`Patient.name`): selects the focus items of that type.
    /// Resolved at compile time from a leading identifier that names a model type.
    TypeFilter(String),
    Call {
        target: Option<Box<Node>>,
        func: Func,
        args: Vec<Node>,
    },
    /// `is`, `as` and `ofType` with their type resolved at compile time.
    TypeOp {
        target: Option<Box<Node>>,
        op: TypeOpKind,
        ty: TypeSpec,
    },
    Index(Box<Node>, Box<Node>),
    Neg(Box<Node>),
    Bin(BinOp, Box<Node>, Box<Node>),
    Env(String),
    This,
    IndexVar,
    Total,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeOpKind {
    Is,
    /// The `as` operator: filters a collection (R4 SearchParameters apply it to collections).
    As,
    /// The `as()` function: one item at most.
    AsFunction,
    OfType,
}

macro_rules! functions {
    ($($variant:ident = $name:literal ($min:literal, $max:literal)),* $(,)?) => {
        /// Every function the engine knows, resolved from its name at compile time.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Func { $($variant),* }

        impl Func {
            /// Resolves a function name with its arity bounds.
            pub fn lookup(name: &str) -> Option<(Func, usize, usize)> {
                match name {
                    $($name => Some((Func::$variant, $min, $max)),)*
                    _ => None,
                }
            }
            pub fn name(self) -> &'static str {
                match self { $(Func::$variant => $name),* }
            }
        }
    };
}

functions! {
    Empty = "empty" (0, 0),
    Exists = "exists" (0, 1),
    All = "all" (1, 1),
    AllTrue = "allTrue" (0, 0),
    AnyTrue = "anyTrue" (0, 0),
    AllFalse = "allFalse" (0, 0),
    AnyFalse = "anyFalse" (0, 0),
    SubsetOf = "subsetOf" (1, 1),
    SupersetOf = "supersetOf" (1, 1),
    Count = "count" (0, 0),
    Distinct = "distinct" (0, 0),
    IsDistinct = "isDistinct" (0, 0),
    Where = "where" (1, 1),
    Select = "select" (1, 1),
    Repeat = "repeat" (1, 1),
    RepeatAll = "repeatAll" (1, 1),
    Single = "single" (0, 0),
    First = "first" (0, 0),
    Last = "last" (0, 0),
    Tail = "tail" (0, 0),
    Skip = "skip" (1, 1),
    Take = "take" (1, 1),
    Intersect = "intersect" (1, 1),
    Exclude = "exclude" (1, 1),
    Union = "union" (1, 1),
    Combine = "combine" (1, 1),
    Iif = "iif" (2, 3),
    ToBoolean = "toBoolean" (0, 0),
    ConvertsToBoolean = "convertsToBoolean" (0, 0),
    ToInteger = "toInteger" (0, 0),
    ConvertsToInteger = "convertsToInteger" (0, 0),
    ToLong = "toLong" (0, 0),
    ConvertsToLong = "convertsToLong" (0, 0),
    ToDate = "toDate" (0, 0),
    ConvertsToDate = "convertsToDate" (0, 0),
    ToDateTime = "toDateTime" (0, 0),
    ConvertsToDateTime = "convertsToDateTime" (0, 0),
    ToDecimal = "toDecimal" (0, 0),
    ConvertsToDecimal = "convertsToDecimal" (0, 0),
    ToQuantity = "toQuantity" (0, 1),
    ConvertsToQuantity = "convertsToQuantity" (0, 1),
    ToStringFn = "toString" (0, 0),
    ConvertsToString = "convertsToString" (0, 0),
    ToTime = "toTime" (0, 0),
    ConvertsToTime = "convertsToTime" (0, 0),
    IndexOf = "indexOf" (1, 1),
    LastIndexOf = "lastIndexOf" (1, 1),
    Substring = "substring" (1, 2),
    StartsWith = "startsWith" (1, 1),
    EndsWith = "endsWith" (1, 1),
    ContainsStr = "contains" (1, 1),
    Upper = "upper" (0, 0),
    Lower = "lower" (0, 0),
    Replace = "replace" (2, 2),
    Matches = "matches" (1, 2),
    MatchesFull = "matchesFull" (1, 2),
    ReplaceMatches = "replaceMatches" (2, 3),
    Length = "length" (0, 0),
    ToChars = "toChars" (0, 0),
    Split = "split" (1, 1),
    Join = "join" (0, 1),
    Trim = "trim" (0, 0),
    Encode = "encode" (1, 1),
    Decode = "decode" (1, 1),
    Escape = "escape" (1, 1),
    Unescape = "unescape" (1, 1),
    Abs = "abs" (0, 0),
    Ceiling = "ceiling" (0, 0),
    Exp = "exp" (0, 0),
    Floor = "floor" (0, 0),
    Ln = "ln" (0, 0),
    Log = "log" (1, 1),
    Power = "power" (1, 1),
    Round = "round" (0, 1),
    Sqrt = "sqrt" (0, 0),
    Truncate = "truncate" (0, 0),
    Children = "children" (0, 0),
    Descendants = "descendants" (0, 0),
    Trace = "trace" (1, 2),
    Now = "now" (0, 0),
    TimeOfDay = "timeOfDay" (0, 0),
    Today = "today" (0, 0),
    Aggregate = "aggregate" (1, 2),
    Type = "type" (0, 0),
    Not = "not" (0, 0),
    Extension = "extension" (1, 1),
    HasExtension = "hasExtension" (1, 1),
    HasValue = "hasValue" (0, 0),
    GetValue = "getValue" (0, 0),
    Resolve = "resolve" (0, 0),
    HtmlChecks = "htmlChecks" (0, 0),
    HtmlChecks2 = "htmlchecks" (0, 0),
    ConformsTo = "conformsTo" (1, 1),
    MemberOf = "memberOf" (1, 1),
    Subsumes = "subsumes" (1, 1),
    SubsumedBy = "subsumedBy" (1, 1),
    LowBoundary = "lowBoundary" (0, 1),
    HighBoundary = "highBoundary" (0, 1),
    PrecisionOf = "precision" (0, 0),
    Comparable = "comparable" (1, 1),
    Sort = "sort" (0, 16),
    DefineVariable = "defineVariable" (1, 2),
    ElementDefinition = "elementDefinition" (0, 0),
    Slice = "slice" (2, 2),
    CheckModifiers = "checkModifiers" (1, 1),
}
