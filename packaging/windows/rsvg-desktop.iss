; Inno Setup script: an installer for the folder `make package` builds on Windows (dist\rsvg-desktop).
; Build on Windows with Inno Setup 6:  iscc packaging\windows\rsvg-desktop.iss
; Not built by this project's CI (Linux only): see packaging/README.md.
#define AppName "rsvg-desktop"
#define AppVersion "0.1.0"

[Setup]
AppId={{8F3E2B1C-5D4A-4C7E-9B2F-6A1D3E5C7B90}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=rsvg-desktop
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
OutputDir=..\..\dist
OutputBaseFilename=rsvg-desktop-{#AppVersion}-setup
Compression=lzma2/max
SolidCompression=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
SetupIconFile=..\..\resources\rsvg-desktop.ico
UninstallDisplayIcon={app}\rsvg-desktop.exe
ChangesEnvironment=yes

[Files]
Source: "..\..\dist\rsvg-desktop\*"; DestDir: "{app}"; Flags: recursesubdirs createallsubdirs ignoreversion
; the command line: the same executable under the name rsvg.exe (it picks its role from its name)
Source: "..\..\dist\rsvg-desktop\rsvg-desktop.exe"; DestDir: "{app}"; DestName: "rsvg.exe"; Flags: ignoreversion

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\rsvg-desktop.exe"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\rsvg-desktop.exe"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "Create a desktop shortcut"; Flags: unchecked
Name: "addtopath"; Description: "Add the rsvg command to PATH"; Flags: unchecked

[Registry]
Root: HKCU; Subkey: "Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; \
  Tasks: addtopath; Check: NeedsAddPath(ExpandConstant('{app}'))

[Code]
function NeedsAddPath(Dir: string): Boolean;
var Paths: string;
begin
  if not RegQueryStringValue(HKEY_CURRENT_USER, 'Environment', 'Path', Paths) then
  begin
    Result := True;
    exit;
  end;
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Paths) + ';') = 0;
end;
